import json
import shutil

import pytest
import torch

from monitor.config import Config
from monitor.inference.models.cnn10 import Cnn10
from monitor.inference.weights import MODELS_DIR, ModelFileError, load_model, read_manifest, sha256_of


def test_shipped_detector_loads_after_hash_check():
    model, entry = load_model(MODELS_DIR / "detector.pt")
    assert isinstance(model, Cnn10) and not model.training
    assert entry.sha256 == sha256_of(MODELS_DIR / "detector.pt")
    assert entry.sha256 in (MODELS_DIR / "detector.md").read_text()  # the model card names the shipped file
    with torch.no_grad():
        assert model(torch.zeros(1, 16000)).shape == (1,)


@pytest.fixture
def model_copy(tmp_path):
    for name in ("detector.pt", "manifest.json"):
        shutil.copy(MODELS_DIR / name, tmp_path / name)
    return tmp_path / "detector.pt"


def test_tampered_weights_are_refused(model_copy):
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match the manifest"):
        load_model(model_copy)


def test_missing_unlisted_and_malformed(model_copy, tmp_path):
    with pytest.raises(ModelFileError, match="model file missing"):
        load_model(tmp_path / "absent.pt")
    shutil.copy(model_copy, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not listed"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="malformed model manifest"):
        load_model(model_copy)


def test_default_config_points_at_the_shipped_onnx_models():
    config = Config()
    assert config.detector.model == MODELS_DIR / "detector-yamnet-lwf-int8.onnx"
    assert config.classifier.model == MODELS_DIR / "classifier.onnx"
    listed = read_manifest(MODELS_DIR)
    for path in (config.detector.model, config.classifier.model):
        assert listed[path.name].sha256 == sha256_of(path)


class Payload:
    """Not a tensor: a pickle that would run arbitrary code if loaded without weights_only."""


def test_pickled_objects_are_refused_even_with_a_matching_hash(tmp_path):
    from monitor.inference.weights import write_manifest_entry

    torch.save({"state": Payload()}, tmp_path / "evil.pt")
    write_manifest_entry(tmp_path, "evil.pt", "cnn10", {})
    with pytest.raises(ModelFileError, match="cannot load weights"):
        load_model(tmp_path / "evil.pt")


def test_a_malformed_operating_point_is_a_malformed_manifest(model_copy, tmp_path):
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["detector.pt"]["operating_point"] = {"medium": {"start_threshold": "high", "confirm_windows": 2,
                                                             "of_windows": 2}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="malformed model manifest"):
        load_model(model_copy)
    manifest["detector.pt"]["operating_point"] = {"medium": {"start_threshold": 0.9}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="malformed model manifest"):
        load_model(model_copy)


@pytest.fixture
def classifier_copy(tmp_path):
    for name in ("classifier.pt", "classifier.onnx", "manifest.json"):
        shutil.copy(MODELS_DIR / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("written, read", [(True, "prototypes"), (False, "off"), ("prior", "prior"),
                                           ("majority", "majority"), (None, None)])
def test_an_adaptation_verdict_reads_as_a_learner_and_older_true_false_as_prototypes_off(classifier_copy, written,
                                                                                          read):
    manifest = json.loads((classifier_copy / "manifest.json").read_text())
    manifest["classifier.pt"]["adaptation"] = written
    (classifier_copy / "manifest.json").write_text(json.dumps(manifest))
    assert read_manifest(classifier_copy)["classifier.pt"].adaptation == read


@pytest.mark.parametrize("field, value", [("adaptation", "mean"), ("adaptation", 1), ("answer_prior", {"a": 1.0}),
                                          ("answer_prior", {"a": "x", "b": 1.0, "floor": 0.1}),
                                          ("answer_prior", {"a": 1.0, "b": -1.0, "floor": 0.1}),
                                          ("answer_prior", {"a": 1.0, "b": 1.0, "floor": 0.0})])
def test_an_unknown_learner_or_a_broken_answer_prior_is_a_malformed_manifest(classifier_copy, field, value):
    manifest = json.loads((classifier_copy / "manifest.json").read_text())
    manifest["classifier.pt"][field] = value
    (classifier_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="malformed model manifest"):
        read_manifest(classifier_copy)


def test_the_adaptation_verdict_goes_to_the_model_and_its_exports_of_the_same_weights(classifier_copy):
    from monitor.inference.weights import write_adaptation

    prior = {"a": 0.5, "b": 2.0, "floor": 0.05}
    write_adaptation(classifier_copy, "classifier.pt", "prior", prior)
    entries = read_manifest(classifier_copy)
    for name in ("classifier.pt", "classifier.onnx"):
        assert entries[name].adaptation == "prior" and entries[name].answer_prior == prior
    with pytest.raises(ValueError, match="none of"):
        write_adaptation(classifier_copy, "classifier.pt", "sometimes", prior)
    (classifier_copy / "classifier.pt").write_bytes(b"retrained")  # its exports are of other weights now
    with pytest.raises(ModelFileError, match="changed since its manifest entry"):
        write_adaptation(classifier_copy, "classifier.pt", "off", prior)
