"""The detectors (monitor/inference/detect.py): the shipped detector on real held-out sounds in a quiet room, a
window-form model, and the loudness mode.

Issue 9's spec: a cry still fires; a held-out real laugh, meow or shout in a quiet room does not.
"""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import DATA, windowed
from monitor.audio.files import read_file
from monitor.config import Config
from monitor.core.pipeline import Pipeline
from monitor.inference.detect import CryDetector
from monitor.inference.models.cnn10 import Cnn10
from monitor.inference.weights import write_manifest_entry
from monitor.offline.data import category


def loud_then_quiet(loud_seconds: float, level_dbfs: float) -> np.ndarray:
    rng = np.random.default_rng(2)
    quiet = rng.standard_normal(16000 * 8) * 1e-4
    loud = rng.standard_normal(int(16000 * loud_seconds)) * 10 ** (level_dbfs / 20)
    return np.concatenate([quiet[:16000], loud, quiet]).astype(np.float32)


def loudness_config(hold: float) -> Config:
    from monitor.config import override

    return override(Config(), "detector", kind="loudness", loudness_dbfs=-30.0, loudness_hold_seconds=hold,
                    hop_seconds=0.25)


def test_loudness_mode_fires_on_any_sound_held_long_enough():
    from monitor.core.pipeline import Pipeline
    from monitor.inference.detect import LoudnessDetector, make_detector

    config = loudness_config(hold=1.0)
    detector = make_detector(config.detector)
    assert isinstance(detector, LoudnessDetector) and detector.model_id == "loudness@-30dBFS"

    def events(audio):
        pipeline = Pipeline(config, detector)
        return [e.type for e in pipeline.feed(audio).events + pipeline.close().events]

    assert events(loud_then_quiet(4.0, -20)) == ["cry_start", "cry_end"]
    assert events(loud_then_quiet(0.3, -20)) == []  # a door click is shorter than the hold time
    assert events(loud_then_quiet(4.0, -40)) == []  # below the level
    pipeline = Pipeline(config, detector)
    start = pipeline.feed(loud_then_quiet(4.0, -20)).events[0]
    assert start.t == pytest.approx(1.0 + 1.0, abs=0.01)  # 4 loud hops of 0.25 s after the onset at 1 s


def in_quiet_room(clip: np.ndarray, active_dbfs: float) -> np.ndarray:
    """2 s of a quiet room, the clip at ``active_dbfs`` (RMS of its frames within 25 dB of its loudest), 4 s more."""
    from monitor.training.soundscapes import active_db

    active = active_db(clip)
    quiet = np.random.default_rng(5).standard_normal(6 * 16000).astype(np.float32) * 10 ** (-66 / 20)
    scaled = clip * 10 ** ((active_dbfs - active) / 20)
    return np.concatenate([quiet[: 2 * 16000], scaled + np.resize(quiet, scaled.size), quiet[2 * 16000 :]])


def event_types(audio: np.ndarray, detector, config: Config = Config()) -> list[str]:
    pipeline = Pipeline(config, detector)
    return [e.type for e in pipeline.feed(audio).events + pipeline.close().events]


# (path under ../shared/data, its category): held out by the split (checked below), never trained on
NOT_CRIES = [
    ("notcry/vocal/hedgewars/Default/Laugh.ogg", "vocal"),  # an adult laugh
    ("notcry/vocal/hedgewars/Default_uk/Laugh.ogg", "vocal"),
    ("notcry/vocal/hedgewars/Default/Nooo.ogg", "vocal"),  # a shout (the previous detector fired on it)
    ("notcry/vocal/hedgewars/Default/Ow2.ogg", "vocal"),  # a cry of pain from an adult
    ("notcry/sfx/tuxpaint/cat/blackcat.ogg", "animal"),  # a meow (the CNN10 detector fired on it)
    ("notcry/sfx/gcompris/animal_sheep/sheep.ogg", "animal"),  # a bleat, the animal call nearest to a baby's
]


def short_name(case) -> str:
    path = case.values[0] if hasattr(case, "values") else case[0]
    return "/".join(path.rsplit("/", 2)[-2:])


@pytest.mark.parametrize("path, kind", NOT_CRIES, ids=[short_name(c) for c in NOT_CRIES])
@pytest.mark.parametrize("level", [-30, -20])
def test_held_out_laugh_meow_or_shout_in_a_quiet_room_does_not_fire(split, detector, path, kind, level):
    clips, groups = split
    clip = next(c for c in clips if str(c.path.relative_to(DATA)) == path)
    assert groups[clip.group] == "val" and category(clip) == kind  # the premise: held out, of this kind
    assert event_types(in_quiet_room(read_file(clip.path), level), detector) == []


# A known failure of the shipped detector, kept visible: strict, so the day it passes the mark must go
MISSED = pytest.mark.xfail(strict=True, reason="a held-out cry the shipped detector misses at -30 dBFS at the medium "
                                               "preset (it finds it at -20; the CNN10 detector missed it at both)")
# the first four held-out cries of at least 5 s, by file name (the premise is checked in the test), at two levels
CASES = [pytest.param("02ead89b", -30, marks=MISSED), ("02ead89b", -20)]
CASES += [(prefix, level) for prefix in ("0776b33b", "0F4B1065", "0f257dac") for level in (-30, -20)]


@pytest.mark.parametrize("prefix, level", CASES, ids=lambda p: p[:8] if isinstance(p, str) else str(p))
def test_held_out_cry_at_the_same_levels_fires(split, detector, prefix, level):
    clips, groups = split
    cries = sorted((c for c in clips if c.source == "donateacry-cleaned" and groups[c.group] == "val"
                    and c.duration_s >= 5), key=lambda c: c.path.name)[:4]
    cry = next(c for c in cries if c.path.name.startswith(prefix))
    assert event_types(in_quiet_room(read_file(cry.path), level), detector) == ["cry_start", "cry_end"]


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


@pytest.mark.parametrize("chunk", [1600, 80000], ids=["0.1s", "5s"])
def test_the_default_detector_shares_frames_between_hops_and_scores_each_window_as_on_its_own(real_audio, chunk):
    """The shipped YAMNet export computes each 10 ms log-mel frame once for all the windows of a push
    (monitor/inference/models/yamnet.py); a window's score is still the one it gets alone."""
    default = CryDetector(Config().detector)
    assert default.frame_samples == 160
    stream = default.stream(3840)
    pieces = [stream.push(real_audio[i : i + chunk]) for i in range(0, real_audio.size, chunk)]
    ends = np.concatenate([e for e, _ in pieces])
    np.testing.assert_array_equal(ends, np.arange(15600, real_audio.size + 1, 3840))
    scores = np.concatenate([p for _, p in pieces])
    np.testing.assert_allclose(scores, windowed(default, real_audio, ends), atol=1e-6)
    assert scores.max() > 0.5  # the cry is in there: not a comparison of constants


def test_a_hop_off_the_default_detectors_frame_grid_is_a_config_error():
    from monitor.config import ConfigError

    with pytest.raises(ConfigError, match="multiple of 0.01 s"):
        CryDetector(Config().detector).stream(3850)
