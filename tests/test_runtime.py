"""Which runtime runs a model file (monitor/inference/runtime.py): a replay without torch, and a ``.pt`` model
then naming the torch extra."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT


pytestmark = pytest.mark.xdist_group("onnx-exports")  # as it ran before: in the worker of the ONNX exports


def test_the_whole_replay_runs_without_torch_and_a_pt_model_then_names_the_torch_extra(cry_then_quiet, tmp_path):
    from daemon_helpers import without_torch

    env = without_torch(tmp_path)
    replay = [sys.executable, "-m", "monitor", "replay", str(cry_then_quiet), "--log-format", "json"]
    out = subprocess.run(replay, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    kinds = [json.loads(line)["type"] for line in out.stdout.splitlines()]
    assert kinds[0] == "cry_start" and "cry_reason" in kinds and kinds[-1] == "cry_end"
    config = tmp_path / "torch.yaml"
    config.write_text(f"detector:\n  model: {ROOT / 'models' / 'detector.pt'}\n")
    out = subprocess.run([*replay, "--config", str(config)], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "detector.pt: a .pt model needs torch: pip install -e '.[torch]'" in out.stderr
