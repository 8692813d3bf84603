"""Evaluation metrics (monitor/offline/evaluation.py) on hand-made annotations with answers worked out by hand."""

from itertools import product

import numpy as np
import pytest

from monitor.offline.evaluation import (
    Annotation,
    MissedCry,
    Windows,
    by_scene,
    detections_from_events,
    evaluate_file,
    match_events,
    read_annotations,
    roc_auc,
    summarize,
    window_labels,
)


def events_for(*intervals: tuple[float, float]) -> list[dict]:
    """Replay-style payloads: one cry_start / cry_end pair per (start, end)."""
    events = []
    for i, (start, end) in enumerate(intervals):
        events += [{"type": "cry_start", "t": start, "id": f"c{i}", "confidence": 0.9},
                   {"type": "cry_end", "t": end, "id": f"c{i}", "confidence": 0.95, "duration_s": end - start}]
    return sorted(events, key=lambda e: e["t"])


CRIES = [Annotation(10, 20, "cry"), Annotation(40, 50, "cry"), Annotation(60, 70, "speech"),
         Annotation(100, 110, "cry")]
# A: cry 1, 0.8 s late. B: cry 2, 1.2 s late. C: on the speech (false alarm). D: cry 2 again (a true detection,
# but not its first). E: touches the end of cry 3 without overlapping it (false alarm; cry 3 missed).
DETECTIONS = events_for((10.8, 25), (41.2, 52), (62, 66), (48, 49), (110, 115))


def test_event_matching_by_hand():
    counts = match_events(CRIES, detections_from_events(DETECTIONS), duration_s=3600, file="night")
    assert (counts.detections, counts.true_detections, counts.false_alarms) == (5, 3, 2)
    assert counts.precision == pytest.approx(3 / 5) and counts.recall == pytest.approx(2 / 3)
    assert counts.f1 == pytest.approx(12 / 19)  # 2·(3/5)·(2/3) / (3/5 + 2/3)
    assert counts.non_cry_seconds == 3570  # speech is not a cry: only the 30 s of cries are excluded
    assert counts.false_alarms_per_hour == pytest.approx(2 / (3570 / 3600))
    assert counts.latencies == pytest.approx((0.8, 1.2))
    assert counts.latency_median == pytest.approx(1.0)
    assert counts.latency_p95 == pytest.approx(0.8 + 0.95 * 0.4)  # linear interpolation between the two
    assert counts.missed == (MissedCry("night", 100, 110),)
    assert counts.false_alarm_labels == ("speech", "none")  # C lies on the speech, E on nothing annotated


def test_tolerance_widens_the_cries():
    counts = match_events(CRIES, detections_from_events(DETECTIONS), duration_s=3600, tolerance_s=0.5)
    assert (counts.true_detections, counts.detected_cries, counts.missed) == (4, 3, ())
    assert counts.latencies == pytest.approx((0.8, 1.2, 10.0))  # E starts 10 s after cry 3's onset


def test_a_cry_found_within_a_window_after_it_ended_is_found_late_not_a_false_alarm():
    late = events_for((20.4, 24), (51.5, 53))  # 0.4 s after cry 1 ended; 1.5 s after cry 2
    counts = match_events(CRIES, detections_from_events(late), duration_s=3600, late_s=1.0)
    assert (counts.detected_cries, counts.false_alarms) == (1, 1)
    assert counts.latencies == pytest.approx((10.4,))  # as late as it was
    assert match_events(CRIES, detections_from_events(late), duration_s=3600).false_alarms == 2  # without the collar


def test_no_detections_and_no_cries():
    silent = match_events(CRIES, [], duration_s=200)
    assert (silent.precision, silent.recall, silent.f1, silent.false_alarms_per_hour) == (None, 0.0, 0.0, 0.0)
    assert silent.latency_median is None and len(silent.missed) == 3
    negatives = match_events([Annotation(0, 50, "music")], detections_from_events(events_for((5, 9))), 1800)
    assert (negatives.precision, negatives.recall, negatives.f1) == (0.0, None, None)
    assert negatives.false_alarms_per_hour == pytest.approx(2.0)


def test_overlapping_cries_are_not_counted_twice_as_cry_time():
    counts = match_events([Annotation(0, 10, "cry"), Annotation(5, 15, "cry"), Annotation(95, 120, "cry")], [], 100)
    assert counts.non_cry_seconds == pytest.approx(100 - 15 - 5)  # the last one runs past the end of the file


def test_unpaired_events_are_rejected():
    with pytest.raises(ValueError, match="without cry_end"):
        detections_from_events(DETECTIONS[:1])
    with pytest.raises(ValueError, match="no cry_start"):
        detections_from_events(DETECTIONS[1:2])


def test_window_labels_need_half_a_window_of_cry():
    ends = np.array([2.0, 2.5, 3.0, 3.5, 4.0, 4.5])
    # windows [1,2] [1.5,2.5] [2,3] [2.5,3.5] [3,4] [3.5,4.5] overlap the cry by 0, 0.5, 1, 1, 0.6, 0.1 s
    labels = window_labels([Annotation(2.0, 3.6, "cry"), Annotation(0, 10, "speech")], ends)
    assert labels.tolist() == [False, True, True, True, True, False]
    # [2.0, 2.3] ∪ [2.2, 2.4] covers 0.4 s of [1.5, 2.5]: not half, though the two add up to 0.5
    assert not window_labels([Annotation(2.0, 2.3, "cry"), Annotation(2.2, 2.4, "cry")], np.array([2.5]))[0]


def test_roc_auc_by_hand_and_with_ties():
    assert roc_auc(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(3 / 4)
    assert roc_auc(np.array([0, 1, 0, 1], bool), np.array([0.1, 0.5, 0.5, 0.9])) == pytest.approx(3.5 / 4)
    assert roc_auc(np.array([0, 1, 1], bool), np.zeros(3)) == pytest.approx(0.5)
    assert roc_auc(np.array([1, 1], bool), np.array([0.2, 0.3])) is None


def test_roc_auc_equals_counting_pairs():
    rng = np.random.default_rng(0)
    labels, scores = rng.random(300) < 0.3, rng.integers(0, 5, 300) / 4  # five distinct scores: many ties
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0
             for p, n in product(scores[labels], scores[~labels])]
    assert roc_auc(labels, scores) == pytest.approx(np.mean(pairs))


def test_window_precision_recall_f1_at_threshold():
    windows = Windows(np.array([1, 1, 0, 0, 1], bool), np.array([0.9, 0.5, 0.6, 0.1, 0.2]))
    assert windows.precision_recall_f1(0.5) == pytest.approx((2 / 3, 2 / 3, 2 / 3))  # a score at 0.5 counts
    assert windows.precision_recall_f1(0.95) == (None, 0.0, 0.0)


def test_files_are_pooled_by_counts_per_scene_and_overall():
    night = evaluate_file("night", "quiet", [Annotation(100, 130, "cry")], events_for((101, 140), (500, 510)),
                          np.array([101.0, 102.0]), np.array([0.9, 0.8]), duration_s=1800)
    tv = evaluate_file("tv", "negatives", [Annotation(0, 1830, "speech")], events_for((50, 60)),
                       np.array([1.0, 2.0]), np.array([0.7, 0.2]), duration_s=1830)
    assert list(by_scene([night, tv])) == ["quiet", "negatives"]
    overall = summarize("overall", [night, tv], threshold=0.6)
    assert (overall.cries, overall.detections, overall.false_alarms) == (1, 3, 2)
    assert overall.precision == pytest.approx(1 / 3) and overall.recall == 1.0
    assert overall.false_alarms_per_hour == pytest.approx(2.0)  # 2 false alarms in 1770 s + 1830 s = 1 h
    assert overall.false_alarms_by_label == {"none": 1, "speech": 1}
    assert overall.latency_median_s == pytest.approx(1.0)
    assert overall.window_auc == 1.0  # pooled windows: both cry windows (0.9, 0.8) above the others (0.7, 0.2)
    assert overall.window_precision == pytest.approx(2 / 3) and overall.window_recall == 1.0
    negatives = summarize("negatives", by_scene([night, tv])["negatives"], threshold=0.6)
    assert (negatives.precision, negatives.recall, negatives.f1) == (0.0, None, None)
    assert negatives.false_alarms_per_hour == pytest.approx(3600 / 1830)


def test_annotation_reader(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("onset_s,offset_s,label\n1.5,4,cry\n\n10,12.25,speech\n")
    assert read_annotations(path) == [Annotation(1.5, 4.0, "cry"), Annotation(10.0, 12.25, "speech")]


@pytest.mark.parametrize("text, line, message", [
    ("start,end,label\n1,2,cry\n", 1, "expected the header"),
    ("", 1, "expected the header"),
    ("onset_s,offset_s,label\n1,2,cry\n1.0,abc,cry\n", 3, "must be numbers"),
    ("onset_s,offset_s,label\n5,2,cry\n", 2, "onset_s < offset_s"),
    ("onset_s,offset_s,label\n-1,2,cry\n", 2, "onset_s < offset_s"),
    ("onset_s,offset_s,label\n1,2\n", 2, "expected 3 fields"),
    ("onset_s,offset_s,label\n1,2, \n", 2, "empty label"),
])
def test_malformed_annotations_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        read_annotations(path)
    assert str(error.value).startswith(f"{path}:{line}: ")


def test_a_steady_background_is_blamed_only_when_nothing_else_was_there():
    labels = [Annotation(0, 600, "noise"), Annotation(100, 104, "animal")]
    events = [{"type": "cry_start", "t": 101.0, "id": "a"}, {"type": "cry_end", "t": 109.0, "id": "a"},
              {"type": "cry_start", "t": 300.0, "id": "b"}, {"type": "cry_end", "t": 305.0, "id": "b"}]
    counts = match_events(labels, detections_from_events(events), duration_s=600)
    assert counts.false_alarm_labels == ("animal", "noise")  # the meow over the noise machine, then the machine
