"""The preset rules of tools/compare_detectors.py (monitor.training.detector_comparison.choose)."""

from monitor.core.presets import OperatingPoint
from monitor.offline.evaluation import EventCounts
from monitor.training.detector_comparison import choose
from monitor.training.operating_point import Point

HOUR = 3600.0


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
    chosen = choose(points)
    assert chosen["medium"].point == OperatingPoint(0.97, 4, 5)
    assert chosen["low"].point == OperatingPoint(0.99, 4, 5)  # not the short window that found more
    assert chosen["high"].point == OperatingPoint(0.9, 5, 6)


def test_a_limit_nothing_meets_takes_the_fewest_false_alarms():
    chosen = choose([point(0.9, 4, 5, found=60, false_alarms=9), point(0.95, 4, 5, found=50, false_alarms=4)])
    assert chosen["medium"].point == OperatingPoint(0.95, 4, 5)
    assert chosen["low"].point == OperatingPoint(0.95, 4, 5)
