"""The torch runtime (monitor/inference/torch_runtime.py)."""

import pytest
import structlog
import torch

from monitor.config import DetectorConfig
from monitor.inference.detect import CryDetector
from monitor.inference.torch_runtime import resolve_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the fallback on a machine without a GPU")
def test_cuda_requested_without_gpu_falls_back_to_cpu_with_a_warning():
    with structlog.testing.capture_logs() as logs:
        assert resolve_device("cuda") == "cpu"
        assert resolve_device("auto") == "cpu"
    assert [entry["event"] for entry in logs] == ["cuda_unavailable"]
    assert CryDetector(DetectorConfig(device="cuda")).device == "cpu"
