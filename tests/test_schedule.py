"""When a cry's audio is classified (monitor/core/schedule.py)."""

from monitor.core.schedule import ReasonSchedule


def test_schedule_asks_at_each_time_after_the_start_with_the_lookback():
    s = ReasonSchedule(at_seconds=(2.0, 6.0), lookback_seconds=1.5)
    s.on_event("cry_start", "a", 10.0)
    s.on_time(11.75)
    assert s.take() == []
    s.on_time(12.0)
    assert s.take() == [("a", 8.5, 12.0)]
    s.on_time(15.0)
    assert s.take() == []
    s.on_time(16.25)
    assert s.take() == [("a", 8.5, 16.25)]
    s.on_time(30.0)
    s.on_event("cry_end", "a", 30.0)
    assert s.take() == []  # answered already: the end adds nothing


def test_schedule_answers_a_short_cry_at_its_end_and_a_late_clock_once():
    s = ReasonSchedule(at_seconds=(2.0, 6.0), lookback_seconds=1.0)
    s.on_event("cry_start", "short", 5.0)
    s.on_time(6.0)
    s.on_event("cry_end", "short", 6.5)
    assert s.take() == [("short", 4.0, 6.5)]
    s.on_event("cry_start", "long", 20.0)
    s.on_time(27.0)  # one big chunk passed both times
    assert s.take() == [("long", 19.0, 27.0)]
    s.on_time(40.0)
    assert s.take() == []
