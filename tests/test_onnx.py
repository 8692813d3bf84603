"""Issue 10, part 4 (export): the shipped streaming detector and reason classifier exported to ONNX and run by
ONNX Runtime with numpy only give torch's scores on real audio; a modified or stale export is refused with one
line. (The whole daemon without torch: tests/test_daemon.py.)"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from monitor.audio.files import read_file
from monitor.inference.onnx_runtime import OnnxStream, load_session
from monitor.inference.weights import ModelFileError, load_model
from monitor.training import export_onnx


def exported_copy(tmp_path_factory, name: str) -> Path:
    """A folder holding a copy of the shipped ``name`` (alone in its manifest) and its fresh ONNX export."""
    folder = tmp_path_factory.mktemp(Path(name).stem)
    shutil.copyfile(ROOT / "models" / name, folder / name)
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({name: manifest[name]}))
    assert export_onnx.main(["--model", str(folder / name)]) == 0
    return folder


pytestmark = pytest.mark.xdist_group("onnx-exports")  # one worker makes the module's exports, once

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return exported_copy(tmp_path_factory, "detector.pt")


@pytest.fixture(scope="module")
def exported_classifier(tmp_path_factory):
    return exported_copy(tmp_path_factory, "classifier.pt")


def test_the_onnx_classifier_gives_torchs_probabilities_on_held_out_cries(exported_classifier, val_clips):
    from conftest import pick
    from monitor.config import ClassifierConfig
    from monitor.inference.classify import ReasonClassifier

    runtimes = [ReasonClassifier(ClassifierConfig(model=exported_classifier / name, device="cpu", min_confidence=0.5))
                for name in ("classifier.pt", "classifier.onnx")]
    cries = [read_file(c.path) for c in pick(val_clips, "donateacry-cleaned", "cry")[:8]]
    cries += [cries[0][:2000], np.concatenate(cries)]  # tiled up to 50 frames; cropped to 401
    answers = [[r.classify(audio) for audio in cries] for r in runtimes]
    for torch_answer, onnx_answer in zip(*answers):
        assert onnx_answer.reason == torch_answer.reason
        np.testing.assert_allclose(list(onnx_answer.probs.values()), list(torch_answer.probs.values()), atol=1e-4)
    assert len({a.reason for a in answers[1]} | {round(a.confidence, 3) for a in answers[1]}) > 2  # not constant


def test_the_shipped_onnx_classifier_is_the_shipped_torch_classifier():
    from monitor.inference.weights import read_manifest

    entries = read_manifest(ROOT / "models")
    assert entries["classifier.onnx"].kwargs["source_sha256"] == entries["classifier.pt"].sha256
    assert tuple(entries["classifier.onnx"].kwargs["classes"]) == load_model(ROOT / "models" / "classifier.pt")[0].classes
    load_session(ROOT / "models" / "classifier.onnx")


@pytest.fixture(scope="module")
def real_audio(cry_clip):
    quiet = np.random.default_rng(5).standard_normal(16000).astype(np.float32) * 3e-4
    return np.concatenate([quiet, read_file(cry_clip)[:64000]]).astype(np.float32)


@pytest.mark.parametrize("chunk", [1, 1600, 80000], ids=["1-sample", "0.1s", "5s"])
def test_onnx_runtime_scores_equal_torch_on_real_audio(exported, real_audio, chunk):
    audio = real_audio[:24000] if chunk == 1 else real_audio
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


def test_on_a_gpu_the_cuda_provider_runs_the_same_graph(exported, real_audio):
    onnxruntime = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("no CUDA build of ONNX Runtime here (a Jetson with onnxruntime-gpu has one)")
    session, _ = load_session(exported / "detector.onnx", device="cuda")
    assert session.get_providers()[0] == "CUDAExecutionProvider"
    cpu_ends, cpu_logits = OnnxStream(load_session(exported / "detector.onnx")[0]).push(real_audio)
    ends, logits = OnnxStream(session).push(real_audio)
    np.testing.assert_array_equal(ends, cpu_ends)
    np.testing.assert_allclose(logits, cpu_logits, atol=1e-3)


def test_the_shipped_int8_export_stays_close_to_fp32_and_carries_its_own_presets(real_audio):
    from monitor.config import Config, override
    from monitor.inference.detect import CryDetector
    from monitor.inference.weights import read_manifest

    int8_path, fp32_path = ROOT / "models" / "detector-int8.onnx", ROOT / "models" / "detector.pt"
    if not int8_path.exists():
        pytest.skip("no int8 export shipped")
    entries = read_manifest(ROOT / "models")
    assert entries["detector-int8.onnx"].kwargs["source_sha256"] == entries["detector.pt"].sha256
    assert set(entries["detector-int8.onnx"].operating_point) == {"low", "medium", "high"}  # its own calibration
    int8 = CryDetector(override(Config(), "detector", model=str(int8_path)).detector)
    fp32 = CryDetector(override(Config(), "detector", model=str(fp32_path)).detector)
    hop = 3 * 1280
    ends, probs = int8.stream(hop).push(real_audio)
    fp32_ends, fp32_probs = fp32.stream(hop).push(real_audio)
    np.testing.assert_array_equal(ends, fp32_ends)
    assert np.max(np.abs(probs - fp32_probs)) < 0.15 and probs.max() > 0.5


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
