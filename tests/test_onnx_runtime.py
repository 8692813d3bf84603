"""The ONNX runtime (monitor/inference/onnx_runtime.py): the shipped streaming detector exported to ONNX and run by
ONNX Runtime with numpy only gives torch's scores on real audio; a modified or stale export is refused with one line.
(The whole daemon without torch: tests/test_daemon.py.)"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from monitor.inference.onnx_runtime import OnnxStream, load_session
from monitor.inference.weights import ModelFileError, load_model


pytestmark = pytest.mark.xdist_group("onnx-exports")  # one worker makes the exports (conftest.exported), once


@pytest.mark.parametrize("chunk", [1, 1600, 80000], ids=["1-sample", "0.1s", "5s"])
def test_onnx_runtime_scores_equal_torch_on_real_audio(exported, real_audio_4s, chunk):
    audio = real_audio_4s[:24000] if chunk == 1 else real_audio_4s
    model, _ = load_model(exported / "detector.pt")
    torch_ends, torch_logits = model.stream().push(audio)
    stream = OnnxStream(load_session(exported / "detector.onnx")[0])
    pieces = [stream.push(audio[i : i + chunk]) for i in range(0, audio.size, chunk)]
    ends = np.concatenate([e for e, _ in pieces])
    logits = np.concatenate([p for _, p in pieces])
    np.testing.assert_array_equal(ends, torch_ends)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), 1 / (1 + np.exp(-torch_logits)), atol=1e-4)
    if chunk != 1:
        assert torch_logits.max() > 0  # the cry is in there: not a comparison of constants


def test_a_modified_or_stale_export_is_refused(exported, tmp_path):
    for name in ("detector.pt", "detector.onnx", "manifest.json"):
        shutil.copyfile(exported / name, tmp_path / name)
    onnx = tmp_path / "detector.onnx"
    data = bytearray(onnx.read_bytes())
    data[-100] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match the manifest"):
        load_session(onnx)
    shutil.copyfile(exported / "detector.onnx", onnx)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["detector.pt"]["sha256"] = "0" * 64  # the detector was retrained after the export
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="exported from another version of detector.pt"):
        load_session(onnx)


def test_the_onnx_runtime_path_does_not_import_torch(exported):
    code = ("import sys, numpy as np; from monitor.inference.onnx_runtime import OnnxStream, load_session; "
            f"s = OnnxStream(load_session({str(exported / 'detector.onnx')!r})[0]); s.push(np.zeros(32000, np.float32)); "
            "print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_without_onnxruntime_the_error_names_the_extra(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed: a fault this machine cannot cause
    with pytest.raises(ModelFileError, match=r"pip install -e '\.\[edge\]'"):
        load_session(exported / "detector.onnx")


def test_on_a_gpu_the_cuda_provider_runs_the_same_graph(exported, real_audio_4s):
    onnxruntime = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("no CUDA build of ONNX Runtime here (a Jetson with onnxruntime-gpu has one)")
    session, _ = load_session(exported / "detector.onnx", device="cuda")
    assert session.get_providers()[0] == "CUDAExecutionProvider"
    cpu_ends, cpu_logits = OnnxStream(load_session(exported / "detector.onnx")[0]).push(real_audio_4s)
    ends, logits = OnnxStream(session).push(real_audio_4s)
    np.testing.assert_array_equal(ends, cpu_ends)
    np.testing.assert_allclose(logits, cpu_logits, atol=1e-3)
