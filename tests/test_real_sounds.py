"""The detector on real held-out sounds that are not cries, and the operating point that travels with the model.

Issue 9's spec: a cry still fires; a held-out real laugh, meow or shout in a quiet room does not; the sensitivity
presets used are the ones in the model's manifest entry.
"""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from conftest import DATA, ROOT
from monitor.audio.files import read_file
from monitor.config import Config, override
from monitor.core.presets import OperatingPoint
from monitor.core.pipeline import Pipeline
from monitor.inference.detect import CryDetector
from monitor.inference.weights import read_manifest
from monitor.offline.data import category, read_clips, split_groups


@pytest.fixture(scope="module")
def detector():
    return CryDetector(Config().detector)


@pytest.fixture(scope="module")
def split():
    clips = read_clips(DATA)
    return clips, split_groups(clips)


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


def test_the_operating_point_comes_from_the_model_manifest(tmp_path, detector):
    calibrated = read_manifest(ROOT / "models")[Config().detector.model.name]
    shipped = calibrated.operating_point
    assert Pipeline(Config(), detector).hop == round(calibrated.hop_seconds * 16000)  # N of M counts windows of this hop
    for sensitivity, point in shipped.items():
        config = override(Config(), "events", sensitivity=sensitivity)
        used = Pipeline(config, detector).events.config
        assert (used.start_threshold, used.confirm_windows, used.of_windows) == dataclasses.astuple(point)
    # another model (here: the same weights listed with other presets) brings its own operating point
    shutil.copyfile(ROOT / "models" / "detector.pt", tmp_path / "detector.pt")
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    entry = manifest["detector.pt"]
    entry["operating_point"]["medium"] = {"start_threshold": 0.55, "confirm_windows": 3, "of_windows": 7}
    entry["hop_seconds"] = 0.16
    (tmp_path / "manifest.json").write_text(json.dumps({"detector.pt": entry}))
    other = CryDetector(dataclasses.replace(Config().detector, model=tmp_path / "detector.pt"))
    used = Pipeline(Config(), other).events.config
    assert (used.start_threshold, used.confirm_windows, used.of_windows) == (0.55, 3, 7)
    assert Pipeline(Config(), other).hop == 0.16 * 16000
    assert Pipeline(override(Config(), "detector", hop_seconds=0.4), other).hop == 0.4 * 16000  # the config wins
    assert other.presets["medium"] == OperatingPoint(0.55, 3, 7)
    # the config's own keys, where set, override only the medium preset
    mine = override(Config(), "events", start_threshold=0.9)
    assert Pipeline(mine, other).events.config.start_threshold == 0.9
    assert Pipeline(override(mine, "events", sensitivity="high"), other).events.config.start_threshold == (
        entry["operating_point"]["high"]["start_threshold"])


@pytest.fixture(scope="module")
def real_soundscapes():
    from monitor.training import real_soundscapes

    return real_soundscapes


def test_real_validation_uses_held_out_groups_of_every_category(real_soundscapes, split):
    clips, groups = split
    chosen = real_soundscapes.select_clips(clips)
    assert set(real_soundscapes.EVENT_CATEGORIES) | {"cry", "speech", "music"} <= set(chosen)
    assert all(groups[c.group] == "val" for members in chosen.values() for c in members)
    assert not any(c.source == "donateacry-raw" for c in chosen["cry"])
    held_out_babies = {c.group for c in chosen["cry"]}
    assert not held_out_babies & {c.group for c in clips if groups[c.group] == "train"}


@pytest.fixture(scope="module")
def trainer():
    from monitor.training import negatives

    return negatives


def test_laugh_like_negatives_are_short_bursts_at_laugh_rate(trainer):
    rng = np.random.default_rng(0)
    for _ in range(50):
        bursts = trainer.laugh_rhythm(rng)
        assert 3 <= len(bursts) <= 8  # 4–7 per second, the first may start before the window
        assert all(0.05 * 16000 <= length <= 0.16 * 16000 + 1 for _, length in bursts)
    x = trainer.voiced_bursts(np.random.default_rng(1))
    assert x.shape == (16000,) and x.dtype == np.float32
    frames = np.sqrt(np.mean(x.reshape(50, 320) ** 2, axis=1))  # 20 ms frames
    loud = frames > frames.max() / 10
    assert 2 <= np.count_nonzero(np.diff(loud.astype(int)) == 1) + int(loud[0]) <= 8  # separate bursts, not a tone
