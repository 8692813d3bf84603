"""Exports to ONNX (monitor/training/export_onnx.py): the reason classifier's export gives torch's probabilities on
held-out cries, and the shipped int8 detectors stay close to fp32, on this CPU and on one without VNNI."""

import numpy as np
import pytest

from conftest import ROOT
from monitor.audio.files import read_file
from monitor.inference.onnx_runtime import load_session
from monitor.inference.weights import MODELS_DIR, load_model


@pytest.mark.xdist_group("onnx-exports")
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


@pytest.mark.xdist_group("onnx-exports")
def test_the_shipped_onnx_classifier_is_the_shipped_torch_classifier():
    from monitor.inference.weights import read_manifest

    entries = read_manifest(ROOT / "models")
    assert entries["classifier.onnx"].kwargs["source_sha256"] == entries["classifier.pt"].sha256
    assert tuple(entries["classifier.onnx"].kwargs["classes"]) == load_model(ROOT / "models" / "classifier.pt")[0].classes
    load_session(ROOT / "models" / "classifier.onnx")


@pytest.mark.xdist_group("onnx-exports")
def test_the_shipped_int8_export_stays_close_to_fp32_and_carries_its_own_presets(real_audio_4s):
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
    ends, probs = int8.stream(hop).push(real_audio_4s)
    fp32_ends, fp32_probs = fp32.stream(hop).push(real_audio_4s)
    np.testing.assert_array_equal(ends, fp32_ends)
    assert np.max(np.abs(probs - fp32_probs)) < 0.15 and probs.max() > 0.5


NO_VNNI_CHECK = """
import sys, numpy as np, onnxruntime as ort, soundfile as sf
from numpy._core._multiarray_umath import __cpu_features__ as cpu
audio = sf.read(sys.argv[1], dtype="float32")[0]
starts = np.arange(0, 12 * 3840, 3840)
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[2], options, providers=["CPUExecutionProvider"])
np.save(sys.argv[3], session.run(None, {"audio": audio[: starts[-1] + 15600], "starts": starts // 160})[0])
print(cpu["AVX512VNNI"], cpu["AVX512F"])
"""


@pytest.mark.slow  # seconds of real work: the full suite, not the fast lane
def test_int8_detector_scores_the_same_on_a_cpu_without_vnni(tmp_path, cry_then_quiet):
    # ONNX Runtime's int8 kernels differ by CPU: with VNNI, and without it (AVX2 only), where uint8 × int8 pairs are
    # added in 16 bits and saturate on full-range weights. The export keeps 7-bit weights for that reason; qemu's
    # user-mode emulation of a Haswell (AVX2, no AVX-512, no VNNI) runs the AVX2 kernels on this machine.
    import subprocess
    import sys

    from conftest import need

    qemu = need("qemu-x86_64")
    model = MODELS_DIR / "detector-yamnet-lwf-int8.onnx"
    outputs = {}
    for cpu, prefix in (("native", []), ("haswell", [qemu, "-cpu", "Haswell"])):
        out = tmp_path / f"{cpu}.npy"
        run = subprocess.run([*prefix, sys.executable, "-c", NO_VNNI_CHECK, str(cry_then_quiet), str(model), str(out)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        outputs[cpu] = (np.load(out), run.stdout.split())
    assert outputs["haswell"][1] == ["False", "False"]  # the emulated CPU really has no VNNI and no AVX-512
    native, haswell = outputs["native"][0], outputs["haswell"][0]
    probability = lambda logits: 1 / (1 + np.exp(-np.clip(logits, -50, 50)))  # noqa: E731
    assert np.abs(probability(native) - probability(haswell)).max() <= 0.01


@pytest.fixture(scope="session")
def exported_yamnet(tmp_path_factory):
    from conftest import exported_copy

    return exported_copy(tmp_path_factory, "detector-yamnet.pt")


@pytest.mark.slow  # a YAMNet export: seconds of real work
@pytest.mark.xdist_group("onnx-exports")
def test_yamnets_span_export_scores_what_torch_scores_with_every_pad_inside_a_convolution(exported_yamnet, real_audio_4s):
    import onnx
    import torch

    from monitor.config import Config, override
    from monitor.inference.detect import CryDetector

    graph = onnx.load(str(exported_yamnet / "detector-yamnet.onnx")).graph
    assert [i.name for i in graph.input] == ["audio", "starts"]
    convolutions = [n for n in graph.node if n.op_type == "Conv"]
    padded = {n.output[0] for n in graph.node if n.op_type == "Pad"}
    assert len(convolutions) == 27 and not any(set(c.input) & padded for c in convolutions)
    onnx_detector, torch_detector = (
        CryDetector(override(Config(), "detector", model=str(exported_yamnet / name)).detector)
        for name in ("detector-yamnet.onnx", "detector-yamnet.pt"))
    onnx_ends, onnx_scores = onnx_detector.stream(3840).push(real_audio_4s)
    torch_ends, torch_scores = torch_detector.stream(3840).push(real_audio_4s)
    np.testing.assert_array_equal(onnx_ends, torch_ends)
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-4)
    assert torch_scores.max() > 0.1 and torch.get_num_threads() >= 1


@pytest.mark.slow
@pytest.mark.xdist_group("onnx-exports")
def test_an_exact_rewrite_keeps_the_files_measurements_and_a_different_model_does_not(exported_yamnet, real_audio_4s):
    from monitor.training.export_onnx import measured_if_same, span_scores

    export = exported_yamnet / "detector-yamnet.onnx"
    logits, embeddings = span_scores(export, real_audio_4s)
    carried = measured_if_same(export, (logits, embeddings), real_audio_4s)
    assert carried["embedding_space"] == load_session(export)[1].sha256[:12]
    assert measured_if_same(export, (logits + 1e-6, embeddings), real_audio_4s) == {}
