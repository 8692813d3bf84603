"""Issue 10, part 1: the shipped detector scores a stream once per 80 ms frame, and streaming equals scoring each
window on its own, whatever the chunk size."""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import ROOT
from monitor.audio.files import read_file
from monitor.config import Config, ConfigError, override
from monitor.core.pipeline import Pipeline
from monitor.inference.detect import CryDetector
from monitor.inference.models.cnn10 import Cnn10
from monitor.inference.models.streaming_cnn10 import FRAME
from monitor.inference.weights import write_manifest_entry

TORCH = override(Config(), "detector", model=str(ROOT / "models" / "detector.pt")).detector  # the fp32 reference


@pytest.fixture(scope="module")
def detector():
    return CryDetector(TORCH)


@pytest.fixture(scope="module")
def real_audio(cry_clip):
    """Real audio with a cry's onset in it: 1 s of a quiet room, then the held-out cry (first 2.5 s)."""
    cry = read_file(cry_clip)[: 40000]
    quiet = np.random.default_rng(5).standard_normal(16000).astype(np.float32) * 3e-4
    return np.concatenate([quiet, cry]).astype(np.float32)


def windowed(detector, audio, ends):
    n = detector.window_samples
    return detector.score_windows(np.stack([audio[e - n : e] for e in ends]))


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


def test_pipeline_scores_do_not_depend_on_how_the_audio_is_chunked(detector, real_audio):
    config = Config()
    whole = Pipeline(config, detector).feed(real_audio).scores
    pipeline = Pipeline(config, detector)
    pieces = [s for i in range(0, real_audio.size, 1600) for s in pipeline.feed(real_audio[i : i + 1600]).scores]
    assert [s.t for s in whole] == [s.t for s in pieces]
    np.testing.assert_allclose([s.score for s in whole], [s.score for s in pieces], atol=1e-5)


def test_after_a_pause_windows_stay_on_their_grid_and_score_as_alone(detector, real_audio):
    pipeline = Pipeline(Config(), detector)
    pipeline.feed(real_audio[:16000])
    pipeline.skip(real_audio[16000:24000])
    scores = pipeline.feed(real_audio[24000:]).scores
    ends = [round(s.t * 16000) for s in scores]
    hop = pipeline.hop
    assert (ends[0] - detector.window_samples) % hop == 0 and ends[0] - hop <= 24000 < ends[0]
    fresh = windowed(detector, real_audio, ends)
    np.testing.assert_allclose([s.score for s in scores if not s.gated],
                               fresh[[not s.gated for s in scores]], atol=1e-4)


class CountingDetector(CryDetector):
    """The real shipped detector, counting the audio its score streams are handed."""

    pushed = 0

    def stream(self, hop):
        inner = super().stream(hop)
        outer = self

        class Counted:
            def push(self, samples):
                outer.pushed += samples.size
                return inner.push(samples)

            @property
            def embeddings(self):
                return inner.embeddings

        return Counted()


def test_a_quiet_room_costs_only_the_gate_and_changes_no_score(real_audio):
    counting = CountingDetector(Config().detector)
    silence = np.random.default_rng(3).standard_normal(10 * 16000).astype(np.float32) * 1e-5  # −100 dBFS
    audio = np.concatenate([real_audio, silence, real_audio])
    pipeline = Pipeline(Config(), counting)
    scores = [s for i in range(0, audio.size, 1600) for s in pipeline.feed(audio[i : i + 1600]).scores]
    assert counting.pushed < audio.size - 8 * 16000  # the model slept through most of the silence
    awake = Pipeline(override(Config(), "detector", gate_dbfs=-120.0), counting).feed(audio).scores
    assert [s.t for s in scores] == [s.t for s in awake]
    for sleepy, reference in zip(scores, awake):
        assert sleepy.score == (0.0 if sleepy.gated else pytest.approx(reference.score, abs=1e-4))
    assert any(s.gated for s in scores) and max(s.score for s in scores[-20:]) > 0.5  # it woke up for the cry


def test_quiet_windows_score_zero_and_report_their_level(detector):
    rng = np.random.default_rng(0)
    audio = np.concatenate([rng.standard_normal(2 * 16000) * 10 ** (db / 20) for db in (-100, -70, -40, -20)])
    scores = Pipeline(Config(), detector).feed(audio.astype(np.float32)).scores
    inside = {db: [s for s in scores if i * 2 + 1 <= s.t <= (i + 1) * 2] for i, db in enumerate((-100, -70, -40, -20))}
    for db, windows in inside.items():
        assert windows and all(abs(s.level_dbfs - db) < 0.3 for s in windows)
        assert all(s.gated == (db < Config().detector.gate_dbfs) for s in windows)
        assert all(s.score == 0 for s in windows if s.gated)
    assert all(0 < s.score < 1 for s in inside[-20])


def test_a_window_form_model_is_scored_window_by_window(tmp_path, real_audio):
    """The previous detectors (window form, as measured side by side in the card) run through the same pipeline."""
    torch.manual_seed(0)
    torch.save(Cnn10().state_dict(), tmp_path / "window.pt")  # mechanics only: this model is never shipped
    write_manifest_entry(tmp_path, "window.pt", "cnn10", {})
    old = CryDetector(dataclasses.replace(Config().detector, model=tmp_path / "window.pt"))
    hop = 4000
    stream = old.stream(hop)
    pieces = [stream.push(real_audio[i : i + 777]) for i in range(0, real_audio.size, 777)]
    ends = np.concatenate([e for e, _ in pieces])
    np.testing.assert_array_equal(ends, np.arange(16000, real_audio.size + 1, hop))
    np.testing.assert_allclose(np.concatenate([p for _, p in pieces]), windowed(old, real_audio, ends), atol=1e-5)
