import numpy as np
import pytest
import structlog
import torch

from monitor.config import Config, DetectorConfig
from monitor.inference.detect import CryDetector
from monitor.inference.torch_runtime import resolve_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the fallback on a machine without a GPU")
def test_cuda_requested_without_gpu_falls_back_to_cpu_with_a_warning():
    with structlog.testing.capture_logs() as logs:
        assert resolve_device("cuda") == "cpu"
        assert resolve_device("auto") == "cpu"
    assert [entry["event"] for entry in logs] == ["cuda_unavailable"]
    assert CryDetector(DetectorConfig(device="cuda")).device == "cpu"


def loud_then_quiet(loud_seconds: float, level_dbfs: float) -> np.ndarray:
    rng = np.random.default_rng(2)
    quiet = rng.standard_normal(16000 * 8) * 1e-4
    loud = rng.standard_normal(int(16000 * loud_seconds)) * 10 ** (level_dbfs / 20)
    return np.concatenate([quiet[:16000], loud, quiet]).astype(np.float32)


def loudness_config(hold: float) -> Config:
    from monitor.config import override

    return override(Config(), "detector", kind="loudness", loudness_dbfs=-30.0, loudness_hold_seconds=hold,
                    hop_seconds=0.25)


def test_loudness_mode_fires_on_any_sound_held_long_enough():
    from monitor.core.pipeline import Pipeline
    from monitor.inference.detect import LoudnessDetector, make_detector

    config = loudness_config(hold=1.0)
    detector = make_detector(config.detector)
    assert isinstance(detector, LoudnessDetector) and detector.model_id == "loudness@-30dBFS"

    def events(audio):
        pipeline = Pipeline(config, detector)
        return [e.type for e in pipeline.feed(audio).events + pipeline.close().events]

    assert events(loud_then_quiet(4.0, -20)) == ["cry_start", "cry_end"]
    assert events(loud_then_quiet(0.3, -20)) == []  # a door click is shorter than the hold time
    assert events(loud_then_quiet(4.0, -40)) == []  # below the level
    pipeline = Pipeline(config, detector)
    start = pipeline.feed(loud_then_quiet(4.0, -20)).events[0]
    assert start.t == pytest.approx(1.0 + 1.0, abs=0.01)  # 4 loud hops of 0.25 s after the onset at 1 s
