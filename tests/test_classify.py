"""The reason classifier (monitor/inference/classify.py): its front end, the shipped classifier on held-out cries,
the loudness mode, the adaptation verdict and the baby's metadata."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import structlog
import torch

from conftest import pick
from monitor.config import ADAPTATIONS, ClassifierConfig, Config
from monitor.core.events import REASONS, UNCERTAIN
from monitor.core.pipeline import Pipeline
from monitor.inference.classify import MAX_FRAMES, MIN_FRAMES, ReasonClassifier, prepare, trim_silence
from monitor.inference.weights import ModelFileError


# ---------------------------------------------------------------- front end

def test_trim_silence_and_prepare():
    loud = np.full((120, 64), -20.0, np.float32)
    quiet = np.full((40, 64), -90.0, np.float32)
    x = np.concatenate([quiet, loud, quiet])
    assert trim_silence(x).shape[0] == 120
    long = np.full((1000, 64), -20.0, np.float32)
    assert prepare(long).shape == (MAX_FRAMES, 64)
    assert prepare(np.full((7, 64), -20.0, np.float32)).shape == (MIN_FRAMES, 64)  # tiled up


# ---------------------------------------------------------------- the shipped classifier

@pytest.fixture(scope="module")
def classifier():
    return ReasonClassifier(ClassifierConfig(device="cpu"))


@pytest.fixture(scope="module")
def held_out_cries(val_clips):
    from monitor.audio.files import read_file

    return [read_file(c.path) for c in pick(val_clips, "donateacry-cleaned", "cry")[:6]]


def test_classifier_gives_calibrated_probabilities_over_the_reasons(classifier, held_out_cries):
    results = [classifier.classify(audio) for audio in held_out_cries]
    for r in results:
        assert set(r.probs) == set(REASONS)
        assert abs(sum(r.probs.values()) - 1.0) < 1e-4
        assert r.confidence == pytest.approx(max(r.probs.values()))
        assert r.reason == (max(r.probs, key=r.probs.get) if r.confidence >= classifier.min_confidence else UNCERTAIN)
    assert len({tuple(sorted(r.probs.items())) for r in results}) > 1  # it listens: different cries, different answers


def test_min_confidence_decides_uncertain(held_out_cries):
    always = ReasonClassifier(ClassifierConfig(device="cpu", min_confidence=0.0)).classify(held_out_cries[0])
    never = ReasonClassifier(ClassifierConfig(device="cpu", min_confidence=1.0)).classify(held_out_cries[0])
    assert always.reason in REASONS and never.reason == UNCERTAIN
    assert always.probs == never.probs


def test_too_little_audio_is_a_clear_error(classifier):
    with pytest.raises(ValueError, match="at least 0.1 s"):
        classifier.classify(np.zeros(100, dtype=np.float32))


def test_missing_classifier_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="missing"):
        ReasonClassifier(ClassifierConfig(model=tmp_path / "classifier.pt"))


def test_cuda_asked_for_without_a_gpu_falls_back_to_cpu_with_a_warning(held_out_cries):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the fallback cannot happen here")
    with structlog.testing.capture_logs() as logs:
        classifier = ReasonClassifier(ClassifierConfig(device="cuda"))
    assert classifier.device == "cpu"
    assert any(r["event"] == "cuda_unavailable" and "classifier.device" in r["detail"] for r in logs)
    assert classifier.classify(held_out_cries[0]).reason in (*REASONS, UNCERTAIN)


def test_loudness_mode_asks_for_no_reasons(cry_then_quiet):
    from monitor.inference.classify import make_classifier

    config = Config()
    assert make_classifier(config) is not None
    config = dataclasses.replace(config, detector=dataclasses.replace(config.detector, kind="loudness", loudness_dbfs=-60.0))
    assert make_classifier(config) is None  # a "reason" for a slammed door would be noise
    from monitor.inference.detect import LoudnessDetector

    audio, _ = sf.read(cry_then_quiet, dtype="float32")
    result = Pipeline(config, LoudnessDetector(config.detector), reasons=False).feed(audio)
    assert any(e.type == "cry_start" for e in result.events) and result.requests == []


# ---------------------------------------------------------------- metadata and the adaptation verdict

def test_the_shipped_classifier_carries_its_adaptation_verdict_and_auto_follows_it(held_out_cries):
    from monitor.inference.weights import MODELS_DIR, read_manifest

    manifest = read_manifest(MODELS_DIR)
    verdict = manifest["classifier.pt"].adaptation
    assert verdict in ADAPTATIONS, "tools/reason_table.py writes the study's verdict"
    assert manifest["classifier.pt"].answer_prior is not None, "and the count prior's fitted values"
    for key in ("adaptation", "answer_prior"):  # the export carries them
        assert getattr(manifest["classifier.onnx"], key) == getattr(manifest["classifier.pt"], key)
    auto = ReasonClassifier(ClassifierConfig(device="cpu"))
    assert auto.learner == verdict and auto.adapting is (verdict != "off")
    assert auto.answer_prior == manifest["classifier.onnx"].answer_prior
    assert ReasonClassifier(ClassifierConfig(device="cpu", adaptation=True)).learner == "prototypes"
    assert ReasonClassifier(ClassifierConfig(device="cpu", adaptation=False)).adapting is False
    reason = ReasonClassifier(ClassifierConfig(device="cpu")).classify(held_out_cries[0])
    assert reason.embedding is not None and len(reason.embedding) > 8 and "embedding" not in repr(reason)


def test_the_babys_age_is_derived_on_the_day_and_missing_metadata_is_zeros():
    from datetime import date

    from monitor.config import BabyConfig

    told = ReasonClassifier(ClassifierConfig(device="cpu", baby=BabyConfig(sex="f", birth_date=date(2026, 10, 1))))
    assert told.metadata(on=date(2026, 10, 20)).tolist() == [0, 1, 1, 0, 0, 0, 0]  # 19 days: 0-4w
    assert told.metadata(on=date(2027, 1, 5)).tolist() == [0, 1, 0, 0, 1, 0, 0]  # 3 months: 2-6m
    assert not ReasonClassifier(ClassifierConfig(device="cpu")).metadata().any()


@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_a_metadata_model_reads_the_baby_in_both_runtimes(tmp_path, held_out_cries, suffix):
    """The plumbing from ``classifier.baby`` to a metadata model's input, on an untrained (never shipped) model:
    telling the sex changes its answer, not telling it is the all-zeros input."""
    import torch

    from monitor.config import BabyConfig
    from monitor.inference.models.reason import ReasonNet
    from monitor.inference.weights import read_manifest, write_manifest_entry
    from monitor.training.export_onnx import export_classifier, record

    torch.manual_seed(0)
    net = ReasonNet("tbdm", metadata=True).eval()
    torch.save(net.state_dict(), tmp_path / "meta.pt")
    write_manifest_entry(tmp_path, "meta.pt", "reason", {"backbone": "tbdm", "metadata": True, "classes": list(REASONS)})
    if suffix == ".onnx":
        export_classifier(net, tmp_path / "meta.onnx")
        record(tmp_path / "meta.onnx", "onnx-reason", tmp_path / "meta.pt", read_manifest(tmp_path)["meta.pt"],
               presets=True, classes=list(REASONS))
    path = tmp_path / f"meta{suffix}"
    unknown = ReasonClassifier(ClassifierConfig(model=path, device="cpu")).classify(held_out_cries[0])
    boy = ReasonClassifier(ClassifierConfig(model=path, device="cpu", baby=BabyConfig(sex="m"))).classify(held_out_cries[0])
    assert boy.probs != unknown.probs
    with torch.no_grad():
        from monitor.inference.classify import prepare
        from monitor.inference.features import logmel

        x = torch.from_numpy(prepare(logmel(held_out_cries[0])))[None]
        expected = torch.softmax(net(x, torch.zeros(1, 7)), dim=1)[0]
    assert list(unknown.probs.values()) == pytest.approx(expected.tolist(), abs=1e-5)
