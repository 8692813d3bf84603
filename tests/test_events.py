import numpy as np
import pytest

from monitor.config import EventsConfig
from monitor.core.events import CryStateMachine

HOP = 0.25


def run(sm: CryStateMachine, scores, start_t: float = 0.0):
    events = []
    for i, s in enumerate(scores):
        events += sm.update(start_t + (i + 1) * HOP, s)
    return events


def counter():
    n = iter(range(10**6))
    return lambda: f"id{next(n)}"


def test_start_needs_n_of_m_confirmation():
    sm = CryStateMachine(EventsConfig(start_threshold=0.85, confirm_windows=3, of_windows=4), new_id=counter())
    assert run(sm, [0.9, 0.1, 0.9, 0.1, 0.1, 0.9]) == []  # never 3 high in any 4
    events = run(sm, [0.9, 0.9])  # with the previous 0.9: 0.1, 0.9, 0.9, 0.9 → 3 of 4
    assert [e.type for e in events] == ["cry_start"]
    assert events[0].confidence == pytest.approx(0.9)


def test_end_after_hold_below_end_threshold_with_duration():
    cfg = EventsConfig(start_threshold=0.85, confirm_windows=2, of_windows=2, end_threshold=0.4, end_hold_seconds=2.0)
    sm = CryStateMachine(cfg, new_id=counter())
    events = run(sm, [0.9] * 8 + [0.5] * 4 + [0.1] * 12)
    assert [e.type for e in events] == ["cry_start", "cry_end"]
    start, end = events
    assert start.id == end.id
    assert end.t - 3.0 == pytest.approx(2.0)  # last window ≥ 0.4 ended at t = 12·0.25 = 3.0
    assert end.duration_s == pytest.approx(end.t - start.t)
    assert end.ended_by == "quiet" and end.to_dict()["duration_s"] == pytest.approx(end.duration_s)


def test_scores_between_thresholds_keep_the_cry_open():
    cfg = EventsConfig(start_threshold=0.6, end_threshold=0.3, end_hold_seconds=1.0, confirm_windows=1, of_windows=1)
    sm = CryStateMachine(cfg)
    events = run(sm, [0.9] + [0.45] * 100)
    assert [e.type for e in events] == ["cry_start"] and sm.crying


def test_no_double_start_and_cooldown():
    cfg = EventsConfig(start_threshold=0.85, confirm_windows=1, of_windows=1, end_hold_seconds=1.0,
                       cooldown_seconds=5.0)
    sm = CryStateMachine(cfg, new_id=counter())
    events = run(sm, [0.9] * 20)
    assert [e.type for e in events] == ["cry_start"]
    events = run(sm, [0.0] * 4, start_t=5.0)  # ends at t = 6.0
    assert [e.type for e in events] == ["cry_end"]
    assert run(sm, [0.9] * 15, start_t=6.0) == []  # cool-down until 11.0 (t = 6.25 … 9.75)
    events = run(sm, [0.9] * 6, start_t=9.75)  # t = 10.0 … 11.25
    assert [e.type for e in events] == ["cry_start"] and events[0].t == pytest.approx(11.0)
    assert events[0].id == "id1"


def test_max_duration_refreshes_instead_of_sticking():
    cfg = EventsConfig(start_threshold=0.95, confirm_windows=2, of_windows=2, max_duration_seconds=10.0)
    sm = CryStateMachine(cfg, new_id=counter())
    events = run(sm, [0.99] * 200)  # 50 s of non-stop crying
    types = [e.type for e in events]
    assert types[:4] == ["cry_start", "cry_end", "cry_start", "cry_end"]
    ends = [e for e in events if e.type == "cry_end"]
    assert all(e.ended_by == "max_duration" and e.duration_s == pytest.approx(10.0) for e in ends)
    assert len({e.id for e in events if e.type == "cry_start"}) == types.count("cry_start")


@pytest.mark.parametrize("seed", range(20))
def test_always_alternates_and_always_ends(seed):
    rng = np.random.default_rng(seed)
    sm = CryStateMachine(EventsConfig(start_threshold=0.95, confirm_windows=2, of_windows=2, max_duration_seconds=30.0),
                         new_id=counter())
    scores = np.clip(rng.normal(0.5, 0.35, 4000) + np.repeat(rng.choice([-0.4, 0.4], 100), 40), 0, 1)
    events = run(sm, scores) + sm.close(len(scores) * HOP + HOP)
    types = [e.type for e in events]
    assert types[::2] == ["cry_start"] * len(types[::2])
    assert types[1::2] == ["cry_end"] * len(types[1::2])
    assert len(types) % 2 == 0 and not sm.crying  # close() ended whatever was open
    for start, end in zip(events[::2], events[1::2]):
        assert start.id == end.id and 0 < end.duration_s <= 30.0 + HOP


def test_close_without_open_cry_emits_nothing():
    sm = CryStateMachine(EventsConfig(start_threshold=0.95, confirm_windows=2, of_windows=2))
    assert run(sm, [0.0] * 10) == [] and sm.close(3.0) == []
