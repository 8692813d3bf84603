"""The soundscape builder (monitor/training/soundscapes.py): held-out selection and determinism."""

import dataclasses

import numpy as np
import pytest

from conftest import DATA
from monitor.offline.data import read_clips, split_groups


@pytest.fixture(scope="module")
def soundscapes():
    from monitor.training import soundscapes

    return soundscapes


def test_soundscapes_use_held_out_groups_only(soundscapes):
    clips = read_clips(DATA)
    split = split_groups(clips)
    roles = soundscapes.select_clips(clips)
    assert all(roles.values()), {role: len(chosen) for role, chosen in roles.items()}
    assert all(split[c.group] == "val" for chosen in roles.values() for c in chosen)
    assert {c.source for c in roles["cries"]} == {"donateacry-cleaned"}
    training = {c.group for c in clips if split[c.group] == "train"}
    assert not training & {c.group for chosen in roles.values() for c in chosen}


def test_trim_cuts_near_silence_to_the_frame(soundscapes):
    tone = np.sin(np.arange(16000) * 0.1).astype(np.float32)
    x = np.concatenate([np.full(8000, 1e-4, np.float32), tone, np.full(8000, 1e-4, np.float32)])
    assert soundscapes.trim(x).size == pytest.approx(16000, abs=2 * soundscapes.FRAME)


@pytest.fixture(scope="module")
def small_materials(soundscapes):
    """A few held-out clips of each kind, no espeak speech: enough to build short recordings quickly."""
    roles = soundscapes.select_clips(read_clips(DATA))
    load = soundscapes.read_file
    return soundscapes.Materials(cries=[soundscapes.trim(load(c.path)) for c in roles["cries"][:4]],
                                 digits=[load(c.path) for c in roles["digits"][:20]], voices=[],
                                 music=load(roles["music"][0].path), noise=load(roles["noise"][0].path))


@pytest.mark.parametrize("name", ["white_noise_0db", "tv_radio", "negatives_household"])
def test_soundscape_recordings_are_deterministic(soundscapes, small_materials, name):
    index = [r.name for r in soundscapes.RECORDINGS].index(name)
    recording = dataclasses.replace(soundscapes.RECORDINGS[index], seconds=60)
    first, again, other = (soundscapes.build(recording, small_materials, seed, index) for seed in (1, 1, 2))
    assert np.array_equal(first.audio, again.audio) and first.labels == again.labels
    assert not np.array_equal(first.audio, other.audio)
    assert first.audio.size == 60 * 16000 and np.abs(first.audio).max() <= 0.99 + 1e-6
    assert all(0 <= on < off <= 60 for on, off, _ in first.labels)
    assert any(label == "cry" for *_, label in first.labels) == (recording.scene != "negatives")
