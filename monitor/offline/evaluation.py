"""Metrics for judging the detector on long annotated recordings, the way parents experience it. Pure: no I/O
beyond reading an annotation file that the caller names.

Annotations are a CSV ``onset_s,offset_s,label``; ``label == "cry"`` marks a cry, any other label a distractor
(speech, music, noise …), kept for the timeline but never a target.

Event level (what a parent is told):
- a detection is the interval ``[cry_start.t, cry_end.t]`` of one cry ``id`` from the replay events;
- a detection *matches* a cry when the two intervals overlap after widening the cry by ``tolerance_s`` on each
  side (default 0: they must share some time; touching end points do not count) and its end by one window more
  (``late_s``: ``evaluate_file`` passes the window length). A ``cry_start`` in the second after a cry ended was
  decided on windows that still held it: it is that cry found late (its latency says how late), not a false alarm
  and a missed cry. Before 2026-12-07 it counted as both: on the nursery report sets that was every one of the
  default's 4 false alarms at its medium preset, and 4 of YAMNet's 5 out of the box;
- precision = matching detections / detections; recall = cries matched by some detection / cries;
- a false alarm is a detection that matches no cry, counted per hour of audio *not* covered by cry annotations,
  and blamed on the distractor label it overlaps longest (``none`` if it overlaps none): what fools the model.
  A steady background (label ``noise``: a noise machine annotated over the whole recording) is blamed only when
  no other distractor overlaps the detection, else every false alarm in such a recording would read "noise";
- latency of a detected cry = ``cry_start.t − onset`` of the earliest detection matching it (negative when that
  detection began before the annotated onset); reported as the median and the 95th percentile (linear
  interpolation, ``numpy.percentile``'s default).

Window level (what the model scores): a window of ``window_s`` ending at ``t`` is positive when at least half of
it overlaps annotated cries (the union of cry intervals, so overlapping annotations are not counted twice).
ROC-AUC is the Mann–Whitney statistic with mid-ranks for ties (a tie between a positive and a negative counts
one half); precision/recall/F1 count a window as detected when ``score >= threshold``, as the event state
machine does.

A ratio with nothing to count is None (precision without detections, recall and F1 without cries, FA/h without
non-cry audio), never NaN; F1 is 0 when there are cries and none was found. One long detection may match several
cries (``events.max_duration_seconds`` bounds it): the timeline shows such cases at a glance.

Counts add up (``+``), so a scene or the whole set is evaluated by summing its files' counts and pooling their
windows, never by averaging per-file ratios.

Example:
    >>> cries = [Annotation(10.0, 20.0, "cry")]
    >>> events = [{"type": "cry_start", "t": 10.5, "id": "a"}, {"type": "cry_end", "t": 24.0, "id": "a"}]
    >>> counts = match_events(cries, detections_from_events(events), duration_s=3600.0)
    >>> counts.recall, counts.latency_median
    (1.0, 0.5)
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

CRY = "cry"
BACKGROUND = "noise"  # a steady background, blamed for a false alarm only when nothing else was there
HEADER = ["onset_s", "offset_s", "label"]


def f1(precision: float, recall: float) -> float:
    """The harmonic mean of precision and recall; 0 when both are 0. Every F1 in the project is this one.

    Example:
        >>> round(f1(0.83, 0.75), 3), f1(0.0, 0.0)
        (0.788, 0.0)
    """
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


@dataclass(frozen=True)
class Annotation:
    onset_s: float
    offset_s: float
    label: str

    @property
    def is_cry(self) -> bool:
        return self.label == CRY


@dataclass(frozen=True)
class Detection:
    start_s: float
    end_s: float


@dataclass(frozen=True)
class MissedCry:
    file: str
    onset_s: float
    offset_s: float


def read_annotations(path: str | Path) -> list[Annotation]:
    """Read ``onset_s,offset_s,label`` rows; a malformed file raises ValueError naming the file and line."""
    path = Path(path)
    with open(path, newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None or [h.strip() for h in header] != HEADER:
            raise ValueError(f"{path}:1: expected the header {','.join(HEADER)}, got {','.join(header or [])!r}")
        return [_parse_row(row, f"{path}:{rows.line_num}") for row in rows if any(cell.strip() for cell in row)]


def _parse_row(row: list[str], where: str) -> Annotation:
    if len(row) != 3:
        raise ValueError(f"{where}: expected 3 fields onset_s,offset_s,label, got {len(row)}: {','.join(row)!r}")
    try:
        onset, offset = float(row[0]), float(row[1])
    except ValueError:
        raise ValueError(f"{where}: onset_s and offset_s must be numbers, got {row[0]!r}, {row[1]!r}") from None
    label = row[2].strip()
    if not (math.isfinite(onset) and math.isfinite(offset)) or onset < 0 or offset <= onset:
        raise ValueError(f"{where}: need 0 <= onset_s < offset_s, got {onset}, {offset}")
    if not label:
        raise ValueError(f"{where}: empty label")
    return Annotation(onset, offset, label)


def detections_from_events(events: Iterable[dict]) -> list[Detection]:
    """Pair ``cry_start`` / ``cry_end`` payloads by ``id`` into intervals, in start order.

    Replay closes an open cry at the end of a file, so an unpaired event means a truncated event log: ValueError.
    """
    starts: dict[str, float] = {}
    detections = []
    for event in events:
        if event["type"] == "cry_start":
            starts[event["id"]] = float(event["t"])
        elif event["type"] == "cry_end":
            if event["id"] not in starts:
                raise ValueError(f"cry_end at t={event['t']} has no cry_start with id {event['id']}")
            detections.append(Detection(starts.pop(event["id"]), float(event["t"])))
    if starts:
        raise ValueError(f"cry_start without cry_end at t={sorted(starts.values())}")
    return sorted(detections, key=lambda d: d.start_s)


def merge_intervals(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of intervals as sorted, disjoint intervals. ``[(0, 2), (1, 3), (5, 6)] → [(0, 3), (5, 6)]``"""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


@dataclass(frozen=True)
class EventCounts:
    """Event-level counts of one or more files; add them to pool files."""

    detections: int = 0
    true_detections: int = 0  # detections that match at least one cry
    cries: int = 0
    detected_cries: int = 0
    non_cry_seconds: float = 0.0
    latencies: tuple[float, ...] = ()
    missed: tuple[MissedCry, ...] = ()
    false_alarm_labels: tuple[str, ...] = ()  # per false alarm: the distractor it overlaps most, or "none"

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def false_alarms(self) -> int:
        return self.detections - self.true_detections

    @property
    def precision(self) -> float | None:
        return self.true_detections / self.detections if self.detections else None

    @property
    def recall(self) -> float | None:
        return self.detected_cries / self.cries if self.cries else None

    @property
    def f1(self) -> float | None:
        """None without annotated cries; 0 when cries exist but nothing was detected."""
        if self.recall is None:
            return None
        return f1(self.precision or 0.0, self.recall)

    @property
    def false_alarms_per_hour(self) -> float | None:
        return self.false_alarms / (self.non_cry_seconds / 3600) if self.non_cry_seconds > 0 else None

    @property
    def false_alarms_by_label(self) -> dict[str, int]:
        """Label of the sound under the false alarms → count, most first."""
        return dict(Counter(self.false_alarm_labels).most_common())

    @property
    def false_alarms_per_hour_by_label(self) -> dict[str, float]:
        """Label of the sound under the false alarms → false alarms per hour of cry-free audio, most first."""
        hours = self.non_cry_seconds / 3600
        return {label: n / hours for label, n in self.false_alarms_by_label.items()} if hours > 0 else {}

    @property
    def latency_median(self) -> float | None:
        return _percentile(self.latencies, 50)

    @property
    def latency_p95(self) -> float | None:
        return _percentile(self.latencies, 95)


def match_events(annotations: Sequence[Annotation], detections: Sequence[Detection], duration_s: float,
                 file: str = "", tolerance_s: float = 0.0, late_s: float = 0.0) -> EventCounts:
    """Event-level counts of one file of ``duration_s`` seconds (see the module docstring for the rules)."""
    cries = sorted((a for a in annotations if a.is_cry), key=lambda a: a.onset_s)

    def overlaps(d: Detection, c: Annotation) -> bool:
        return d.start_s < c.offset_s + tolerance_s + late_s and d.end_s > c.onset_s - tolerance_s

    false_alarms = [d for d in detections if not any(overlaps(d, c) for c in cries)]
    distractors = [a for a in annotations if not a.is_cry]
    latencies, missed = [], []
    for cry in cries:
        matching = [d.start_s for d in detections if overlaps(d, cry)]
        if matching:
            latencies.append(min(matching) - cry.onset_s)
        else:
            missed.append(MissedCry(file, cry.onset_s, cry.offset_s))
    covered = sum(max(0.0, min(end, duration_s) - max(start, 0.0))
                  for start, end in merge_intervals((c.onset_s, c.offset_s) for c in cries))
    return EventCounts(len(detections), len(detections) - len(false_alarms), len(cries), len(cries) - len(missed),
                       max(0.0, duration_s - covered), tuple(latencies), tuple(missed),
                       tuple(_blame(d, distractors) for d in false_alarms))


def _blame(detection: Detection, distractors: Sequence[Annotation]) -> str:
    """The label of the distractors a false alarm overlaps longest (summed per label), or ``"none"``."""
    seconds: Counter[str] = Counter()
    for a in distractors:
        seconds[a.label] += max(0.0, min(detection.end_s, a.offset_s) - max(detection.start_s, a.onset_s))
    if any(v > 0 for k, v in seconds.items() if k != BACKGROUND):
        seconds.pop(BACKGROUND, None)
    label, longest = seconds.most_common(1)[0] if seconds else ("none", 0.0)
    return label if longest > 0 else "none"


def window_labels(annotations: Sequence[Annotation], ends: np.ndarray, window_s: float = 1.0) -> np.ndarray:
    """True for each window ``[t − window_s, t]`` that overlaps annotated cries for at least half its length."""
    ends = np.asarray(ends, dtype=float)
    overlap = np.zeros(ends.shape)
    for onset, offset in merge_intervals((a.onset_s, a.offset_s) for a in annotations if a.is_cry):
        overlap += np.clip(np.minimum(ends, offset) - np.maximum(ends - window_s, onset), 0.0, None)
    return overlap >= window_s / 2


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Probability that a random positive outscores a random negative (ties count ½); None without both classes.

    >>> roc_auc(np.array([False, True, False, True]), np.array([0.1, 0.5, 0.5, 0.9]))
    0.875
    """
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size)
    ranks[order] = np.arange(1, scores.size + 1)
    # Mid-ranks: every member of a run of equal scores gets the mean rank of the run.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first, counts):
        if count > 1:
            ranks[order[start : start + count]] = start + (count + 1) / 2
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class Windows:
    """Window labels and scores of one or more files; add them to pool files."""

    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __add__(self, other: Windows) -> Windows:
        return Windows(np.concatenate([self.labels, other.labels]), np.concatenate([self.scores, other.scores]))

    @property
    def auc(self) -> float | None:
        return roc_auc(self.labels, self.scores)

    def precision_recall_f1(self, threshold: float) -> tuple[float | None, float | None, float | None]:
        predicted = self.scores >= threshold
        tp = int((predicted & self.labels).sum())
        precision = tp / int(predicted.sum()) if predicted.any() else None
        recall = tp / int(self.labels.sum()) if self.labels.any() else None
        if recall is None:
            return precision, None, None
        return precision, recall, f1(precision or 0.0, recall)


@dataclass(frozen=True)
class FileResult:
    file: str
    scene: str
    duration_s: float
    events: EventCounts
    windows: Windows


def evaluate_file(file: str, scene: str, annotations: Sequence[Annotation], events: Iterable[dict],
                  window_ends: np.ndarray, window_scores: np.ndarray, duration_s: float,
                  tolerance_s: float = 0.0, window_s: float = 1.0) -> FileResult:
    """Everything measured on one file: its event counts (a cry found up to ``window_s`` after its end is found
    late) and its labelled window scores (``window_s``: the detector's window)."""
    counts = match_events(annotations, detections_from_events(events), duration_s, file, tolerance_s, window_s)
    labels = window_labels(annotations, window_ends, window_s)
    return FileResult(file, scene, duration_s, counts, Windows(labels, np.asarray(window_scores, dtype=float)))


@dataclass(frozen=True)
class Summary:
    """One row of the report: the metrics of a file, a scene or everything, at one operating threshold."""

    name: str
    hours: float
    cries: int
    detections: int
    precision: float | None
    recall: float | None
    f1: float | None
    false_alarms: int
    false_alarms_per_hour: float | None
    false_alarms_by_label: dict[str, int]  # which distractors the false alarms overlapped, most first
    false_alarms_per_hour_by_label: dict[str, float]  # the same, per hour of cry-free audio
    latency_median_s: float | None
    latency_p95_s: float | None
    missed: list[MissedCry]
    window_auc: float | None
    window_precision: float | None
    window_recall: float | None
    window_f1: float | None


def summarize(name: str, results: Sequence[FileResult], threshold: float) -> Summary:
    """Pool the files' counts and windows, then compute the ratios once."""
    events = sum((r.events for r in results), EventCounts())
    windows = sum((r.windows for r in results), Windows())
    wp, wr, wf1 = windows.precision_recall_f1(threshold)
    return Summary(name, sum(r.duration_s for r in results) / 3600, events.cries, events.detections,
                   events.precision, events.recall, events.f1, events.false_alarms, events.false_alarms_per_hour,
                   events.false_alarms_by_label, events.false_alarms_per_hour_by_label,
                   events.latency_median, events.latency_p95, list(events.missed), windows.auc, wp, wr, wf1)


def by_scene(results: Sequence[FileResult]) -> dict[str, list[FileResult]]:
    """Files grouped by the scene name their caller gave them, in first-seen order."""
    groups: dict[str, list[FileResult]] = {}
    for result in results:
        groups.setdefault(result.scene, []).append(result)
    return groups
