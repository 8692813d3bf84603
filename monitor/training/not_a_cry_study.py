#!/usr/bin/env python3
"""Does "not a cry" stop a home's recurring false alarms without hiding a cry? The study behind its rules.

    python tools/not_a_cry_study.py [--model models/detector-yamnet-lwf-int8.onnx] [--homes 8] [--minutes 40]

A real nursery's false alarms repeat: the same cat, the same TV jingle. This simulates homes where they do:

- **Troublemakers.** Every held-out non-cry source (a ``group`` the training split never saw: one recording of an
  animal or a household effect, one voice pack, one music track, one language) is heard through a random nursery
  room at −25 dBFS, three times (:func:`troublemakers`); the ones with a window at the medium preset's threshold
  make a home's residents: the worst case for a parent, and the only sources there is anything to learn about.
  (None of them raises an alarm on its own at the medium preset; in a home, over a noise machine, some do.)
- **Homes.** Each home (:func:`build_home`) is a pyroomacoustics nursery (:func:`monitor.training.nursery_soundscapes.nursery_room`),
  a quiet room or a noise machine, four resident troublemakers from different places in the room, each heard
  :data:`OCCURRENCES` times at random moments (a voice pack: another clip of the same voice each time; one
  recording: up to 8 s of it, pitch-shifted ±1.5 semitones and stretched ±10 % by ``audiomentations``, so no two
  meows are the same file), and five bouts of held-out babies' wideband crying from the crib. The same cat is
  more alike than a real cat's meows are, and less alike than one recording played again: this is a proxy.
- **A parent.** The home is replayed through the daemon's own decisions (:class:`~monitor.core.events.CryStateMachine`
  and :class:`~monitor.core.home_sounds.HoldBack` over the detector's scores and embeddings), at the medium and the
  high preset. Each announced false alarm of a source with fewer than *k* marks is marked "not a cry" when it ends
  (*k* = 1, 3, 10); then the rest plays on. Reported against the same home with the feature off: false alarms per
  hour, *repeats* (a source's false alarms after its *k*-th: what marking can remove), cries lost and cries whose
  start came later. Also per category, with only that category's sources marked.
- **The rules** (:class:`~monitor.core.home_sounds.HoldRules`) are chosen on the calibration homes (seed 1) and the
  nursery calibration set (:func:`choose_rules`), and reported on the report homes (seed 2) and the nursery report
  set. ``never_above``: above every false alarm's highest window on the calibration data; ``announce_after_s``:
  past the longest false alarm there; ``max_distance``: the largest of :data:`DISTANCES` at which no calibration cry
  is lost with *every* calibration false alarm marked beforehand (the worst a parent can do). The report sets are
  then replayed the same way, every false alarm they raise marked, at both presets: a cry lost there is a cry a
  parent's marks can hide. The card also gives the distances behind the verdict (:func:`distances`).
- **On by default** only if no cry is lost on validation and, at both presets, the repeats fall at least 5× after
  3 marks.

The rules go into the detector's manifest entry (``not_a_cry``) and the numbers into ``models/not-a-cry-study.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor import SAMPLE_RATE
from monitor.config import EventsConfig, load_config
from monitor.core.presets import effective_events
from monitor.core.events import CryStateMachine
from monitor.core.home_sounds import HoldBack, HoldRules, HomeSounds, normalised
from monitor.core.levels import level_dbfs
from monitor.inference.detect import CryDetector
from monitor.offline.data import category, read_clips, split_groups
from monitor.offline.evaluation import read_annotations
from monitor.training import nursery_soundscapes as nursery
from monitor.training.cards import render
from monitor.training.soundscapes import SR, active_db, at_db, coloured_noise, excerpt, faded, room, trim

ROOT = Path(__file__).resolve().parents[2]
OCCURRENCES = 30  # each resident's sounds per home: one every 80 s in a 40-minute home
SCREEN_TRIES = 3
RESIDENTS = 4
CRY_BOUTS = 5
MARKS = (1, 3, 10)
MAX_EVENT_S = 8.0
HOP_S = 0.24


@dataclass(frozen=True)
class Source:
    category: str
    group: str
    clips: tuple  # audio arrays (trimmed)


@dataclass
class Scored:
    """A recording as the detector saw it: per window its end time, gated score and embedding (float16)."""

    name: str
    duration_s: float
    t: np.ndarray
    score: np.ndarray
    embedding: np.ndarray
    labels: list  # (onset, offset, label): "cry", or "<category>|<source>" (nursery sets: the category)


# --------------------------------------------------------------------------------------------- the material
def held_out_sources(data_dir: Path) -> list[Source]:
    clips = read_clips(data_dir)
    side = split_groups(clips)
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for clip in sorted(clips, key=lambda c: str(c.path)):
        if side[clip.group] == "val" and clip.label != "cry":
            groups[(category(clip), clip.group)].append(clip)
    from monitor.audio.files import read_file

    sources = []
    for (kind, group), members in sorted(groups.items()):
        audio = tuple(x for x in (trim(read_file(c.path)) for c in members[:40]) if x.size >= SR // 4)
        if audio:
            sources.append(Source(kind, group, audio))
    return sources


def rendition(rng: np.random.Generator, source: Source) -> np.ndarray:
    """One occurrence of a source: another clip of a voice pack, or a varied excerpt of one recording."""
    from audiomentations import PitchShift, TimeStretch

    clip = source.clips[int(rng.integers(len(source.clips)))]
    if clip.size > MAX_EVENT_S * SR:
        clip = excerpt(rng, clip, int(rng.uniform(2, MAX_EVENT_S) * SR))
    if len(source.clips) == 1:  # one recording: vary it, as one cat's meows vary
        random.seed(int(rng.integers(2**31)))  # audiomentations draws from Python's random: seeded from ours
        clip = PitchShift(-1.5, 1.5, p=1.0)(clip.astype(np.float32), SR)
        clip = TimeStretch(0.9, 1.1, p=1.0, leave_length_unchanged=False)(clip, SR)
    return faded(np.asarray(clip, dtype=np.float32))


def score_audio(detector: CryDetector, audio: np.ndarray, gate_dbfs: float) -> tuple[np.ndarray, ...]:
    """Every window on the pipeline's grid: end times, scores (0 below the gate, as the pipeline scores them) and
    embeddings."""
    hop = round(HOP_S * SAMPLE_RATE)
    stream = detector.stream(hop)
    ends, probs = stream.push(audio)
    embeddings = stream.embeddings
    window = detector.window_samples
    levels = np.array([level_dbfs(audio[e - window : e]) for e in ends])
    return ends / SAMPLE_RATE, np.where(levels < gate_dbfs, 0.0, probs), embeddings.astype(np.float16)


def troublemakers(sources: list[Source], detector: CryDetector, threshold: float, gate_dbfs: float) -> list[Source]:
    """The sources that can take part in a false alarm: of :data:`SCREEN_TRIES` renditions each, heard across a
    random nursery at −25 dBFS over a quiet floor, one has a window scoring at least ``threshold`` (the medium
    preset's). Measured: on its own, at the medium preset, none of the held-out sources raises an alarm; they do
    over a noise machine, beside a TV, at other levels, which the homes give them."""
    rng = np.random.default_rng(0)
    chosen = []
    for source in sources:
        room_ = nursery.nursery_room(rng)
        peak = 0.0
        for _ in range(SCREEN_TRIES):
            x = nursery._heard(at_db(rendition(rng, source), -25, active_db), room_.others[0])
            quiet = at_db(coloured_noise(rng, 3 * SR, 1.0), -64)
            audio = np.concatenate([quiet, x + at_db(coloured_noise(rng, x.size, 1.0), -64), quiet])
            peak = max(peak, float(np.max(score_audio(detector, audio, gate_dbfs)[1], initial=0.0)))
        if peak >= threshold:
            chosen.append(source)
        print(f"screened {source.category}/{source.group}: highest window {peak:.3f}", flush=True)
    return chosen


def build_home(seed: int, index: int, residents_pool: list[Source], cries: list[np.ndarray],
               minutes: float) -> tuple[np.ndarray, list[tuple[float, float, str]], str]:
    rng = np.random.default_rng([seed, index])
    room_ = nursery.nursery_room(rng)
    track = room(rng, minutes * 60)
    background = "quiet room"
    floor_db = -60.0
    if index % 2:
        exponent = float(rng.integers(2))
        floor_db = float(rng.uniform(-34, -26))
        track.add(at_db(coloured_noise(rng, track.audio.size, exponent), floor_db), 0)
        background = f"{'pink' if exponent else 'white'} noise machine at {floor_db:.0f} dBFS"
    by_category = defaultdict(list)
    for source in residents_pool:
        by_category[source.category].append(source)
    kinds = rng.permutation(sorted(by_category))
    residents = [by_category[k][int(rng.integers(len(by_category[k])))] for k in kinds[:RESIDENTS]]
    while len(residents) < min(RESIDENTS, len(residents_pool)):  # fewer categories than residents
        extra = residents_pool[int(rng.integers(len(residents_pool)))]
        if extra not in residents:
            residents.append(extra)
    for r, source in enumerate(residents):
        place = room_.others[r % len(room_.others)]
        for _ in range(OCCURRENCES):
            x = nursery._heard(rendition(rng, source), place)
            level = rng.uniform(-35, -20) if index % 2 == 0 else floor_db + rng.uniform(0, 12)
            track.add(at_db(x, level, active_db), int(rng.uniform(0, track.audio.size - x.size)),
                      f"{source.category}|{source.group}")
    order = rng.permutation(len(cries))
    for b in range(CRY_BOUTS):
        bout = np.concatenate([nursery._heard(cries[order[(b * 3 + j) % len(cries)]], room_.crib) for j in range(3)])
        level = rng.uniform(-35, -18) if index % 2 == 0 else floor_db + rng.uniform(0, 10)
        track.add(at_db(bout, level, active_db), int(rng.uniform(0, track.audio.size - bout.size)), "cry")
    about = f"{room_.describe()}; {background}; residents: " + ", ".join(f"{s.category}/{s.group}" for s in residents)
    return track.audio, track.labels, about


# --------------------------------------------------------------------------------------------- the replay
@dataclass
class Detection:
    start: float
    end: float
    peak: float
    embedding: np.ndarray | None
    source: str | None  # None: a cry; else the label of the distractor it overlaps most
    cry_index: int | None


@dataclass
class Outcome:
    detections: list[Detection]
    suppressed: int
    marks: int


def blame(labels, start: float, end: float) -> tuple[str | None, int | None]:
    best, overlap_best, cry = None, 0.0, None
    for i, (on, off, label) in enumerate(labels):
        overlap = min(end, off) - max(start, on)
        if overlap > 0 and label == "cry":
            cry = i if cry is None else cry
        elif overlap > overlap_best and label not in ("cry", "noise"):
            best, overlap_best = label, overlap
    return (None, cry) if cry is not None else (best or "none", None)


def replay(recording: Scored, events: EventsConfig, rules: HoldRules | None, marks_per_source: int = 0,
           markable=lambda source: True, premarked: np.ndarray | None = None) -> Outcome:
    """The daemon's decisions over a scored recording; a parent marks each announced false alarm of a source
    ``markable`` with fewer than ``marks_per_source`` marks when it ends. ``premarked``: marks stored beforehand."""
    machine = CryStateMachine(events)
    marks = [] if premarked is None else list(premarked)
    holdback = HoldBack(events.of_windows, HomeSounds(np.array(marks), rules) if marks and rules else None)
    detections, suppressed, open_ = [], 0, {}
    counts: Counter = Counter()
    for t, score, embedding in zip(recording.t.tolist(), recording.score.tolist(), recording.embedding):
        out, notes = holdback.decide(machine, t, score, embedding.astype(np.float64))
        suppressed += sum(n.outcome == "suppressed" for n in notes)
        for event in out:
            if event.type == "cry_start":
                open_[event.id] = (event.t, event.confidence, event.embedding)
            else:
                start, peak, emb = open_.pop(event.id)
                source, cry = blame(recording.labels, start, event.t)
                detections.append(Detection(start, event.t, event.confidence, None if emb is None else np.array(emb),
                                            source, cry))
                if source is not None and rules and emb is not None and counts[source] < marks_per_source \
                        and markable(source):
                    counts[source] += 1
                    marks.append(np.array(emb))
                    holdback.home = HomeSounds(np.array(marks), rules)
    for event in holdback.close(recording.duration_s, machine.close(recording.duration_s))[0]:
        if event.type == "cry_end":
            start, peak, emb = open_.pop(event.id)
            source, cry = blame(recording.labels, start, event.t)
            detections.append(Detection(start, event.t, peak, None if emb is None else np.array(emb), source, cry))
    return Outcome(detections, suppressed, len(marks))


# --------------------------------------------------------------------------------------------- the sets
def scored_homes(seed: int, count: int, minutes: float, detector: CryDetector, pool: list[Source],
                 cries: list[np.ndarray], gate_dbfs: float) -> list[Scored]:
    residents = hashlib.sha256(",".join(f"{s.group}:{len(s.clips)}" for s in pool).encode()).hexdigest()[:8]
    cache = (ROOT / "cache" / "not-a-cry" /
             f"homes-seed{seed}-{count}x{minutes:g}min-{OCCURRENCES}-{residents}-{detector.model_id}.npz")
    if not cache.exists():
        stored = {}
        for i in range(count):
            audio, labels, about = build_home(seed, i, pool, cries, minutes)
            t, score, embedding = score_audio(detector, audio, gate_dbfs)
            stored |= {f"{i}/t": t, f"{i}/score": score, f"{i}/embedding": embedding,
                       f"{i}/labels": np.array(json.dumps(labels)), f"{i}/about": np.array(about),
                       f"{i}/duration": np.array(audio.size / SR)}
            print(f"home {seed}/{i}: {about}", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **stored)
    data = np.load(cache)
    return [Scored(f"home {seed}/{i} ({data[f'{i}/about']})", float(data[f"{i}/duration"]), data[f"{i}/t"],
                   data[f"{i}/score"], data[f"{i}/embedding"], [tuple(x) for x in json.loads(str(data[f"{i}/labels"]))])
            for i in range(count)]


def scored_nursery(folder: Path, detector: CryDetector, gate_dbfs: float) -> list[Scored]:
    cache = ROOT / "cache" / "not-a-cry" / f"{folder.name}-{detector.model_id}.npz"
    index = json.loads((folder / "index.json").read_text())
    if not cache.exists():
        import soundfile as sf

        stored = {}
        for name in index["files"]:
            audio, _ = sf.read(folder / f"{name}.wav", dtype="float32")
            t, score, embedding = score_audio(detector, audio, gate_dbfs)
            stored |= {f"{name}/t": t, f"{name}/score": score, f"{name}/embedding": embedding,
                       f"{name}/duration": np.array(audio.size / SR)}
            print(f"scored {folder.name}/{name}", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **stored)
    data = np.load(cache)
    return [Scored(name, float(data[f"{name}/duration"]), data[f"{name}/t"], data[f"{name}/score"],
                   data[f"{name}/embedding"],
                   [(a.onset_s, a.offset_s, a.label) for a in read_annotations(folder / f"{name}.csv")])
            for name in index["files"]]


# --------------------------------------------------------------------------------------------- the rules
def false_alarms(recordings: list[Scored], events: EventsConfig) -> list[tuple[Scored, Detection]]:
    return [(r, d) for r in recordings for d in replay(r, events, None).detections if d.source is not None]


def cry_embeddings(recordings: list[Scored], events: EventsConfig) -> np.ndarray:
    """Every window-by-window detection embedding a cry can present while it confirms or is held: the
    confirming windows' embedding at each window of every annotated cry that scores over the threshold."""
    out = []
    for r in recordings:
        holdback = HoldBack(events.of_windows)
        inside = np.zeros(r.t.size, bool)
        for on, off, label in r.labels:
            if label == "cry":
                inside |= (r.t > on) & (r.t <= off + 1.0)
        for i, (t, score) in enumerate(zip(r.t, r.score)):
            holdback.step(float(t), float(score), r.embedding[i].astype(np.float64), events.start_threshold, [])
            if inside[i] and score >= events.start_threshold:
                e = holdback.detection_embedding(events.start_threshold)
                if e is not None:
                    out.append(e)
    return np.array(out)


def distances(recordings: list[Scored], presets: dict[str, EventsConfig]) -> dict[str, str]:
    """Why a distance cannot be both safe and useful, or can: the median and 5th percentile of the distance from
    each false alarm to the nearest cry window, and of the distances between false alarms of one source."""
    to_cry, same = [], []
    for events in presets.values():
        alarms = [(d.source, normalised(d.embedding)) for _, d in false_alarms(recordings, events)
                  if d.embedding is not None]
        cries = cry_embeddings(recordings, events)
        if len(cries):
            to_cry += [float(np.min(1.0 - cries @ e)) for _, e in alarms]
        same += [float(1.0 - a @ b) for i, (s, a) in enumerate(alarms) for t, b in alarms[i + 1 :]
                 if s == t and s != "none"]

    def summary(values: list[float]) -> str:
        if not values:
            return "none measured"
        p5, p50 = np.quantile(values, [0.05, 0.5])
        return f"median {p50:.3f}, 5th percentile {p5:.3f} ({len(values)})"

    return {"alarm_to_nearest_cry": summary(to_cry), "same_source_alarms": summary(same)}


DISTANCES = (0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02, 0.01)


def choose_rules(recordings: list[Scored], presets: dict[str, EventsConfig]) -> tuple[HoldRules, dict]:
    """``never_above`` and ``announce_after_s`` just past every false alarm the calibration data raises at any
    preset; ``max_distance`` the largest of :data:`DISTANCES` at which no calibration cry is lost with *every*
    calibration false alarm marked beforehand, at every preset (0 when none is)."""
    alarms = [(r, d) for events in presets.values() for r, d in false_alarms(recordings, events)]
    peaks = [float(np.max(r.score[(r.t >= d.start) & (r.t <= d.end)], initial=0.0)) for r, d in alarms]
    durations = [d.end - d.start for _, d in alarms]
    never_above = min(0.9999, math.ceil(max(peaks, default=0.99) * 1e4) / 1e4 + 1e-4)
    announce_after_s = float(math.ceil(max(durations, default=10.0)) + 1)
    tried = {}
    for distance in DISTANCES:
        rules = HoldRules(distance, round(never_above, 4), announce_after_s)
        outcomes = {name: worst_case(recordings, events, rules) for name, events in presets.items()}
        tried[distance] = {name: f"{w}/{wo}" for name, (_, wo, w) in outcomes.items()}
        if all(with_marks == without for _, without, with_marks in outcomes.values()):
            break
    else:
        rules = HoldRules(0.0, round(never_above, 4), announce_after_s)
    return rules, {**distances(recordings, presets), "false_alarms": len(alarms),
                   "alarm_peak_max": round(max(peaks, default=0.0), 4),
                   "alarm_duration_max_s": round(max(durations, default=0.0), 2),
                   "cries_found_with_every_alarm_marked": tried}


# --------------------------------------------------------------------------------------------- the report
@dataclass
class Row:
    label: str
    hours_free: float
    before: int
    after: int
    repeats_before: int
    repeats_after: int
    cries: int
    lost: int
    delayed: int
    max_delay_s: float
    suppressed: int

    def line(self) -> str:
        ratio = (f"{self.repeats_before / self.repeats_after:.1f}×" if self.repeats_after
                 else ("∞ (none left)" if self.repeats_before else "–"))
        return (f"| {self.label} | {self.before / self.hours_free:.2f} → {self.after / self.hours_free:.2f} | "
                f"{self.repeats_before} → {self.repeats_after} | {ratio} | {self.lost}/{self.cries} | "
                f"{self.delayed} (max {self.max_delay_s:.1f} s) | {self.suppressed} |")


HEADER = ("| marks | false alarms per hour, before → after | repeats (after a source's marks), before → after | "
          "repeats cut | cries lost | cries delayed > 0.25 s | detections suppressed |\n|---|---|---|---|---|---|---|")


def cry_free_hours(r: Scored) -> float:
    cries = sorted((on, off) for on, off, label in r.labels if label == "cry")
    covered, last = 0.0, 0.0
    for on, off in cries:
        covered += max(0.0, off - max(on, last))
        last = max(last, off)
    return (r.duration_s - covered) / 3600


def study(recordings: list[Scored], events: EventsConfig, rules: HoldRules, k: int, label: str,
          markable=lambda source: True) -> Row:
    row = Row(label, sum(cry_free_hours(r) for r in recordings), 0, 0, 0, 0, 0, 0, 0, 0.0, 0)
    for r in recordings:
        base, feature = replay(r, events, None), replay(r, events, rules, k, markable)
        row.cries += sum(1 for *_, label in r.labels if label == "cry")
        row.suppressed += feature.suppressed
        for outcome, before in ((base, True), (feature, False)):
            seen: Counter = Counter()
            for d in sorted(outcome.detections, key=lambda d: d.start):
                if d.source is None or not markable(d.source):
                    continue
                seen[d.source] += 1
                if before:
                    row.before += 1
                    row.repeats_before += seen[d.source] > k
                else:
                    row.after += 1
                    row.repeats_after += seen[d.source] > k
        first = {}
        for d in sorted(base.detections, key=lambda d: d.start):
            if d.cry_index is not None:
                first.setdefault(d.cry_index, d.start)
        later = {}
        for d in sorted(feature.detections, key=lambda d: d.start):
            if d.cry_index is not None:
                later.setdefault(d.cry_index, d.start)
        for cry, start in first.items():
            if cry not in later:
                row.lost += 1
            elif later[cry] - start > 0.25:
                row.delayed += 1
                row.max_delay_s = max(row.max_delay_s, later[cry] - start)
    return row


def worst_case(recordings: list[Scored], events: EventsConfig, rules: HoldRules) -> tuple[int, int, int]:
    """Every false alarm the set raises marked beforehand: (marks, cries found without, cries found with)."""
    marks = np.array([d.embedding for _, d in false_alarms(recordings, events) if d.embedding is not None])
    found = lambda outcome: {d.cry_index for d in outcome.detections if d.cry_index is not None}
    without = sum(len(found(replay(r, events, None))) for r in recordings)
    with_marks = sum(len(found(replay(r, events, rules, premarked=marks))) for r in recordings) if len(marks) else without
    return len(marks), without, with_marks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "detector-yamnet-lwf-int8.onnx")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--homes", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "not-a-cry-study.md")
    args = parser.parse_args(argv)
    config = load_config(None)
    detector = CryDetector(dataclasses.replace(config.detector, model=str(args.model), hop_seconds=HOP_S))
    gate = config.detector.gate_dbfs
    preset = {s: effective_events(config.events, s, config.detector, detector.presets) for s in ("medium", "high")}
    medium = preset["medium"]
    sources = held_out_sources(args.data)
    pool = troublemakers(sources, detector, medium.start_threshold, gate)
    cries = nursery.load_materials(args.data).cries
    calibration = [*scored_homes(1, args.homes, args.minutes, detector, pool, cries, gate),
                   *scored_nursery(ROOT / "cache" / "nursery-soundscapes-calibration", detector, gate)]
    report_homes = scored_homes(2, args.homes, args.minutes, detector, pool, cries, gate)
    report_nursery = scored_nursery(ROOT / "cache" / "nursery-soundscapes", detector, gate)
    rules, why = choose_rules(calibration, preset)
    print(f"rules {rules} from {why}", flush=True)
    lines = {name: [study(report_homes, events, rules, k, f"{name}, {k}").line() for k in MARKS]
             for name, events in preset.items()}
    categories = sorted({label.split("|")[0] for r in report_homes for *_, label in r.labels if "|" in label})
    by_category = {name: [study(report_homes, events, rules, 3, f"{name}, {c}", lambda s, c=c: s.startswith(c + "|"))
                          .line() for c in categories] for name, events in preset.items()}
    worst = {name: worst_case([*report_nursery, *report_homes], events, rules) for name, events in preset.items()}
    rows3 = {name: study(report_homes, events, rules, 3, "3") for name, events in preset.items()}
    on = (rules.max_distance > 0 and all(w[1] == w[2] for w in worst.values())
          and all(row.lost == 0 for row in rows3.values())
          and all(row.repeats_before > 0 and row.repeats_before >= 5 * row.repeats_after for row in rows3.values()))
    for name in preset:
        print("\n".join([HEADER, *lines[name], "", *by_category[name]]))
    print(f"worst case (every false alarm marked) on the report sets: {worst}; on by default: {on}")
    return write_card(args, detector, pool, sources, rules, why, lines, by_category, worst, on, report_homes)


def write_card(args, detector: CryDetector, pool: list[Source], sources: list[Source], rules: HoldRules, why: dict,
               lines: dict, by_category: dict, worst: dict, on: bool, homes: list[Scored]) -> int:
    from monitor.inference.weights import write_not_a_cry

    write_not_a_cry(args.model.parent, args.model.name, dataclasses.asdict(rules), on)
    worst_lines = [f"| {name} | {marks} | {without} | {with_marks} |" for name, (marks, without, with_marks)
                   in worst.items()]
    tried = "; ".join(f"{d}: {', '.join(f'{k} {v}' for k, v in found.items())}"
                      for d, found in why["cries_found_with_every_alarm_marked"].items())
    tables = "\n\n".join(f"{HEADER.replace('| marks', '| preset, marks')}\n" + "\n".join(lines[name]) +
                          f"\n\nPer category, 3 marks, only that category's sources marked and counted:\n\n"
                          f"{HEADER.replace('| marks', '| preset, category')}\n" + "\n".join(by_category[name])
                          for name in lines)
    card = render(
        "not-a-cry-study.md", model=args.model.name, sha=detector.entry.sha256[:12], hop=HOP_S,
        on="yes" if on else "no", rules=rules, why=why, tried=tried, homes=len(homes), minutes=args.minutes,
        residents=len(pool), sources=len(sources), tables=tables, home_list="\n".join(f"- {h.name}" for h in homes),
        worst="\n".join(worst_lines))
    args.out.write_text(card)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
