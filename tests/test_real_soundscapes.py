"""The headline validation's builder (monitor/training/real_soundscapes.py)."""

import pytest


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
