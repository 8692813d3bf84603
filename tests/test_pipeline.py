"""The pipeline (monitor/core/pipeline.py) on the shipped detector: scores that do not depend on chunking or
pauses, the loudness gate, and the cry audio handed to the classifier in time."""

import numpy as np
import pytest
import soundfile as sf

from conftest import TORCH, windowed
from monitor.config import Config, override
from monitor.core.pipeline import Pipeline
from monitor.inference.detect import CryDetector


@pytest.fixture(scope="module")
def detector():
    return CryDetector(TORCH)


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


def test_pipeline_hands_over_the_cry_audio_in_time(cry_then_quiet):
    config = Config()
    audio, _ = sf.read(cry_then_quiet, dtype="float32")
    result = Pipeline(config, CryDetector(config.detector), reasons=True).feed(audio)
    start = next(e for e in result.events if e.type == "cry_start")
    requests = result.requests
    assert [r.id for r in requests] == [start.id] * len(requests) and len(requests) >= 1
    first = requests[0]
    assert first.t == pytest.approx(start.t + config.classifier.first_after_seconds, abs=0.25)
    expected = (config.classifier.first_after_seconds + config.classifier.lookback_seconds) * 16000
    assert abs(first.samples.size - expected) <= 0.25 * 16000
    # the request holds the audio it claims: the buffer's samples ending at its time
    end = round(first.t * 16000)
    np.testing.assert_array_equal(first.samples, audio[end - first.samples.size : end])
