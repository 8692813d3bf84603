"""The preset rules of tools/compare_detectors.py (monitor.training.detector_comparison.choose)."""

from monitor.core.presets import OperatingPoint
from monitor.offline.evaluation import EventCounts
from monitor.training.detector_comparison import choose
from monitor.training.operating_point import Point

HOUR = 3600.0
LIMITS = {"low": 0.0, "medium": 1.0, "high": 3.0}  # false alarms per hour of calibration audio


def point(threshold: float, n: int, m: int, found: int, false_alarms: int, hop: float = 0.24) -> Point:
    counts = EventCounts(detections=found + false_alarms, true_detections=found, cries=66, detected_cries=found,
                         non_cry_seconds=2 * HOUR, latencies=(2.0,))
    return Point(OperatingPoint(threshold, n, m), hop, counts, counts, EventCounts())


def test_medium_takes_most_cries_within_one_false_alarm_an_hour_and_low_is_no_looser():
    points = [
        point(0.97, 4, 5, found=56, false_alarms=2),  # 1 per hour: the medium
        point(0.9, 4, 5, found=60, false_alarms=3),  # 1.5 per hour: too many for medium
        point(0.995, 2, 3, found=45, false_alarms=0),  # no false alarm, but a shorter window than medium's
        point(0.99, 4, 5, found=40, false_alarms=0),  # no false alarm, at least as strict as medium
        point(0.9, 5, 6, found=62, false_alarms=6),  # 3 per hour, threshold below medium's
        point(0.99, 2, 2, found=63, false_alarms=5),  # 2.5 per hour, but a stricter threshold than medium's
    ]
    chosen = choose(points, LIMITS)
    assert chosen["medium"].point == OperatingPoint(0.97, 4, 5)
    assert chosen["low"].point == OperatingPoint(0.99, 4, 5)  # not the short window that found more
    assert chosen["high"].point == OperatingPoint(0.9, 5, 6)


def test_low_is_stricter_than_a_medium_that_raised_no_false_alarm():
    chosen = choose([point(0.97, 5, 6, found=165, false_alarms=0), point(0.99, 5, 6, found=115, false_alarms=0),
                     point(0.95, 5, 6, found=184, false_alarms=3)], LIMITS)
    assert chosen["medium"].point == OperatingPoint(0.97, 5, 6)
    assert chosen["low"].point == OperatingPoint(0.99, 5, 6)


def test_a_limit_nothing_meets_takes_the_fewest_false_alarms():
    chosen = choose([point(0.9, 4, 5, found=60, false_alarms=9), point(0.95, 4, 5, found=50, false_alarms=4)],
                    LIMITS)
    assert chosen["medium"].point == OperatingPoint(0.95, 4, 5)
    assert chosen["low"].point == OperatingPoint(0.95, 4, 5)


def test_reaction_is_the_first_window_at_the_threshold_after_each_cry_onset():
    import numpy as np

    from monitor.offline.evaluation import Annotation
    from monitor.training.detector_comparison import reaction
    from monitor.training.operating_point import Scored

    t = np.arange(1, 61) * 0.5  # a window every 0.5 s, for 30 s
    score = np.zeros_like(t)
    score[(t >= 11.5) & (t <= 12.0)] = 0.99  # the first cry (onset 10 s) heard 1.5 s in
    score[t == 21.0] = 0.5  # the second (onset 20 s) never reaches the threshold
    score[t == 5.0] = 0.99  # before any cry: not a reaction
    cries = [Annotation(10.0, 15.0, "cry"), Annotation(20.0, 25.0, "cry"), Annotation(4.0, 6.0, "animal")]
    text = reaction([Scored("x", "quiet_events", 30.0, cries, t, score)], 0.97)
    assert text.startswith("1/2 cries reach 0.97") and "1.50 s (median) / 1.50 s (p95)" in text
