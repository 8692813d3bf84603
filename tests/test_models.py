import numpy as np
import pytest
import torch

from monitor.core.levels import level_dbfs
from monitor.inference import onnx_runtime
from monitor.inference.features import HOP, frames_for, logmel, mel_filterbank
from monitor.inference.models import REGISTRY, build
from monitor.inference.models.cnn10 import Cnn10
from monitor.inference.models.logmel import LogMel
from monitor.inference.models.streaming_cnn10 import FRAME, StreamingCnn10


def test_cnn10_parameter_count_matches_panns_with_one_logit():
    # PANNs Cnn10 with K=2 has 4,949,954 trainable parameters (../shared/docs/models.md §2.3); one logit
    # removes one row of the 512→K head (512 weights + 1 bias).
    model = Cnn10()
    assert sum(p.numel() for p in model.parameters()) == 4_949_954 - 513
    assert sum(p.numel() for p in model.frontend.parameters()) == 0  # the front end is fixed, not learned


@pytest.mark.parametrize("samples", [2400, 16000, 40000])
def test_cnn10_shapes(samples):
    model = Cnn10().eval()
    with torch.no_grad():
        assert model(torch.randn(2, samples)).shape == (2,)
        assert Cnn10(num_classes=3).eval()(torch.randn(2, samples)).shape == (2, 3)


def test_streaming_cnn10_has_cnn10s_parameters_and_window_arithmetic():
    model = StreamingCnn10().eval()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in Cnn10().parameters())
    # 4 frame embeddings × 8 log-mel frames + 60 frames the valid convolutions eat = 92 frames = 15,072 samples
    assert (model.window_logmel_frames, model.window_samples, FRAME) == (92, 15072, 1280)
    assert StreamingCnn10(window_frames=1).window_samples == 15072 - 3 * FRAME
    assert (onnx_runtime.STEP, onnx_runtime.WINDOW_SAMPLES) == (FRAME, model.window_samples)  # the exported driver
    with torch.no_grad():
        assert model(torch.randn(2, 16000)).shape == (2,)  # a longer input: the window ending at its last sample
        with pytest.raises(ValueError, match="needs 15072 samples"):
            model(torch.randn(1, 15000))


def test_registry_builds_by_name_and_rejects_unknown():
    assert isinstance(build("cnn10"), Cnn10)
    assert type(build("cnn10-stream")) is StreamingCnn10
    assert "cnn10" in REGISTRY
    with pytest.raises(ValueError, match="unknown model architecture 'cnn100'"):
        build("cnn100")


def test_logmel_frames_and_panns_settings():
    assert frames_for(16000) == 101 and HOP == 160
    logmel = LogMel()(torch.zeros(1, 16000))
    assert logmel.shape == (1, 101, 64)
    assert torch.all(logmel == -100.0)  # 10·log10(1e-10): silence hits the amin floor, no top-dB clipping


def test_logmel_puts_a_tone_in_the_right_mel_band():
    t = torch.arange(16000) / 16000
    for freq in (300.0, 1000.0, 3000.0, 6000.0):
        logmel = LogMel()(torch.sin(2 * np.pi * freq * t)[None])[0].mean(0)
        fb = LogMel().mel.mel_scale.fb  # (freqs, mels): the Slaney filterbank over 50–8000 Hz
        bin_hz = torch.linspace(0, 8000, fb.shape[0])
        centre = float(bin_hz[fb[:, int(torch.argmax(logmel))].argmax()])
        assert abs(centre - freq) / freq < 0.15


def test_numpy_logmel_equals_the_models_torch_logmel_on_a_real_cry(val_clips):
    """The classifier's ONNX path computes its log-mel in numpy; training used torch."""
    from conftest import pick
    from monitor.audio.files import read_file

    np.testing.assert_allclose(mel_filterbank(), LogMel().mel.mel_scale.fb.numpy(), atol=1e-6)
    audio = read_file(pick(val_clips, "donateacry-cleaned", "cry")[0].path)
    expected = LogMel()(torch.from_numpy(audio)[None])[0].numpy()
    assert logmel(audio).shape == expected.shape
    np.testing.assert_allclose(logmel(audio), expected, atol=1e-2)  # torch: float32 STFT


def test_level_dbfs():
    t = np.arange(16000) / 16000
    assert level_dbfs(np.sin(2 * np.pi * 440 * t).astype(np.float32)) == pytest.approx(-3.01, abs=0.01)
    assert level_dbfs(np.zeros(100, np.float32)) == -120.0
