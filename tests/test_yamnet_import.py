"""YAMNet's weights read out of its TFLite file (monitor/training/yamnet_import.py): the shipped copy is a fresh
import, and another file is refused."""

import pytest
import torch

from monitor.inference.models.yamnet import YamnetCry
from monitor.inference.weights import MODELS_DIR, load_model
from monitor.training.yamnet_import import TFLITE, state_dict_from_tflite


def test_the_importer_refuses_another_tflite_file_in_one_line(tmp_path):
    from monitor.training.yamnet_import import main

    modified = tmp_path / "yamnet.tflite"
    data = bytearray(TFLITE.read_bytes())
    data[-100] ^= 1
    modified.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="is not the released YAMNet conversion") as stopped:
        main(["--tflite", str(modified), "--out", str(tmp_path / "yamnet.pt")])
    assert "\n" not in str(stopped.value) and not (tmp_path / "yamnet.pt").exists()


def test_shipped_yamnet_detector_is_the_file_s_weights():
    model, entry = load_model(MODELS_DIR / "detector-yamnet.pt")
    assert entry.arch == "yamnet-cry" and isinstance(model, YamnetCry)
    for name, tensor in state_dict_from_tflite(TFLITE).items():
        assert torch.equal(model.state_dict()[name], tensor), name
