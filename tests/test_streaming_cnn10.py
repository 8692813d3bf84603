"""CNN10 in streaming form (monitor/inference/models/streaming_cnn10.py): issue 10, part 1. The shipped detector
scores a stream once per 80 ms frame, and streaming equals scoring each window on its own, whatever the chunk size."""

import numpy as np
import pytest
import torch

from conftest import TORCH, cry_onset, windowed
from monitor.config import Config, ConfigError, override
from monitor.core.pipeline import Pipeline
from monitor.inference import onnx_runtime
from monitor.inference.detect import CryDetector
from monitor.inference.models.cnn10 import Cnn10
from monitor.inference.models.streaming_cnn10 import FRAME, StreamingCnn10


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


@pytest.fixture(scope="module")
def detector():
    return CryDetector(TORCH)


@pytest.fixture(scope="module")
def real_audio(cry_clip):
    """Real audio with a cry's onset in it: 1 s of a quiet room, then the held-out cry (first 2.5 s)."""
    return cry_onset(cry_clip, 40000)


@pytest.mark.parametrize("chunk", [1, 1600, 4000, 80000], ids=["1-sample", "0.1s", "0.25s", "5s"])
def test_streaming_equals_window_by_window_on_real_audio(detector, real_audio, chunk):
    audio = real_audio[: 2 * 16000] if chunk == 1 else real_audio  # one sample at a time is slow in Python
    stream = detector.stream(FRAME)
    pieces = [stream.push(audio[i : i + chunk]) for i in range(0, audio.size, chunk)]
    ends = np.concatenate([e for e, _ in pieces])
    probs = np.concatenate([p for _, p in pieces])
    assert ends[0] == detector.window_samples and np.all(np.diff(ends) == FRAME)
    assert ends[-1] > audio.size - FRAME  # every complete window was scored
    reference = windowed(detector, audio, ends)
    np.testing.assert_allclose(probs, reference, atol=1e-4)
    assert probs.max() > 0.5 > probs.min()  # real audio with a cry in it, not a constant


def test_hop_keeps_every_nth_frame_and_must_fit_the_frame(detector, real_audio):
    every = detector.stream(FRAME).push(real_audio)
    ends, probs = detector.stream(3 * FRAME).push(real_audio)
    np.testing.assert_array_equal(ends, every[0][::3])
    np.testing.assert_allclose(probs, every[1][::3], atol=1e-6)
    with pytest.raises(ConfigError, match="multiple of 0.08 s"):
        Pipeline(override(Config(), "detector", hop_seconds=0.25), detector)
