#!/usr/bin/env python3
"""Calibrate a detector's sensitivity presets on real held-out recordings, measure them on other ones, record
them in the model's manifest entry, and write the tables the model card quotes.

    python tools/sweep_operating_point.py [--model models/detector.pt] [--baseline REV]

Sets (built if missing, all from held-out groups only):
- *calibration*: ``tools/make_real_soundscapes.py --seed 12`` (182 min, 130 of them cry-free) chooses. It is as
  long as the report set because the medium rule counts false alarms in ones: on 65 cry-free minutes (the half-size
  set used before) one false alarm is already 0.9 per hour, and the choice it made there doubled on the report;
- *report*: ``tools/make_real_soundscapes.py --seed 11`` (190 min, 130 of them cry-free) measures: the headline;
- *synthetic*: ``tools/make_soundscapes.py --seed 1`` (74 min, espeak-ng speech and synthetic distractors), a
  secondary report only.
Calibration and report share held-out groups (there are not enough to split them again) but not mixtures,
gains or offsets, so the report is not the data the choice was fitted to; it is still friendlier than a real
nursery (see the card's limits).

Each recording is scored once per model through the daemon's own ``Pipeline`` at the finest hop (cached in
``cache/sweep/`` by model hash and hop; coarser hops keep every n-th window, as the pipeline would); the event
state machine is then replayed for every candidate (hop × start threshold × N of M; end threshold, hold and
cool-down are the config's). A streaming detector is tried at hops of 0.08 and 0.24 s; the medium rule picks the
hop, recorded in the manifest beside the presets because N of M counts windows. Choices on the calibration set:

- ``medium`` (the default): best event F1 (which weighs a missed cry and a false alarm alike) with at most 5 false
  alarms per hour on cry-free audio. Issue 9 asks for at most 1 per hour, and that rule was tried first: on this
  detector it chose (0.99, 1 of 1), which missed two of four held-out cries played at −30 dBFS in a quiet room
  (``tests/test_detect.py``) and 38 of 71 cries on the report set. A monitor that sleeps through a cry in a
  quiet room fails at its one job, so the default takes the balanced point and its false alarms are reported
  against the goal;
- ``low`` (fewest alarms): best recall with at most 1 false alarm per hour on cry-free audio (issue 9's goal);
- ``high`` (hear more, sooner): best recall with at most 10 false alarms per hour on cry-free audio.

Ties go to the lower median latency, then to fewer false alarms. A rule no candidate meets falls back to the
fewest false alarms, and the table says so. The chosen points are written into the model's entry in
``models/manifest.json`` (``operating_point``), which the daemon reads: a model brings its own presets.
``--baseline`` (default: the detector of 783ad11, at its shipped 0.95 / 2 of 2) is measured on the same report
set, side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[2]

from monitor import SAMPLE_RATE
from monitor.config import Config, EventsConfig
from monitor.core.presets import OperatingPoint, with_point
from monitor.core.events import CryStateMachine, event_payload
from monitor.core.pipeline import Pipeline
from monitor.inference.detect import CryDetector
from monitor.inference.models.streaming_cnn10 import FRAME
from monitor.inference.weights import MODELS_DIR, write_operating_point
from monitor.offline.data import CATEGORIES
from monitor.offline.evaluate_cli import report
from monitor.offline.evaluation import EventCounts, FileResult, evaluate_file, read_annotations
from monitor.training import real_soundscapes as make_real_soundscapes
from monitor.training import soundscapes as make_soundscapes
from monitor.training.cards import render

THRESHOLDS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99)
N_OF_M = ((1, 1), (2, 2), (2, 3), (3, 3), (3, 4), (4, 5), (5, 6))  # in windows at REFERENCE_HOP
REFERENCE_HOP = 0.24
# a streaming detector's cost does not depend on the hop: try its frame (0.08 s) and three frames, with N of M
# scaled so that both cover the same seconds, and keep whichever the medium rule prefers
HOPS = (FRAME / SAMPLE_RATE, REFERENCE_HOP)
BASELINE = "783ad11"
BASELINE_POINT = OperatingPoint(0.95, 2, 2)  # its shipped medium preset (monitor/config.py at that commit)
BASELINE_HOP = 0.25  # ... at its shipped hop
# every category of non-cry sound, shown even when nothing of it fired
NON_CRY = tuple(c for c in CATEGORIES if c != "cry")


@dataclass(frozen=True)
class SoundscapeSet:
    builder: object  # the tool module whose main() builds it
    seed: int
    folder: Path

    def ensure(self) -> None:
        if not (self.folder / "index.json").exists():
            self.builder.main(["--seed", str(self.seed), "--out", str(self.folder)])


SETS = {
    "calibration": SoundscapeSet(make_real_soundscapes, 12, ROOT / "cache" / "real-soundscapes-calibration"),
    "report": SoundscapeSet(make_real_soundscapes, 11, ROOT / "cache" / "real-soundscapes"),
    "synthetic": SoundscapeSet(make_soundscapes, 1, ROOT / "cache" / "soundscapes"),
}


@dataclass
class Scored:
    name: str
    scene: str
    duration_s: float
    annotations: list
    t: np.ndarray
    score: np.ndarray

    def every(self, step: int) -> Scored:
        """The scores at ``step`` times this hop: the windows a pipeline with that hop scores (the first, then
        every ``step``-th, as :class:`monitor.inference.detect.ModelStream` keeps them)."""
        return dataclasses.replace(self, t=self.t[::step], score=self.score[::step])


def scored_set(soundscapes: SoundscapeSet, config: Config, detector: CryDetector, hop: float) -> list[Scored]:
    soundscapes.ensure()
    folder = soundscapes.folder
    index = json.loads((folder / "index.json").read_text())
    cache = ROOT / "cache" / "sweep" / f"{folder.name}-{detector.model_id}-hop{round(hop * 1000)}ms.npz"
    stored = dict(np.load(cache)) if cache.exists() else {}
    out = []
    # scores do not depend on the events settings; fixing them lets an uncalibrated model be scored
    config = dataclasses.replace(config, events=dataclasses.replace(config.events, start_threshold=0.5,
                                                                    confirm_windows=1, of_windows=1),
                                 detector=dataclasses.replace(config.detector, hop_seconds=hop))
    for name, entry in index["files"].items():
        if f"{name}/t" not in stored:
            audio, _ = sf.read(folder / f"{name}.wav", dtype="float32")
            scores = Pipeline(config, detector).feed(audio).scores
            stored[f"{name}/t"] = np.array([s.t for s in scores])
            stored[f"{name}/score"] = np.array([s.score for s in scores])
            stored[f"{name}/duration"] = np.array(audio.size / SAMPLE_RATE)
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **stored)
            print(f"scored {folder.name}/{name} ({detector.model_id})", flush=True)
        out.append(Scored(name, entry["scene"], float(stored[f"{name}/duration"]),
                          read_annotations(folder / f"{name}.csv"), stored[f"{name}/t"], stored[f"{name}/score"]))
    return out


def replay(events: EventsConfig, recording: Scored) -> FileResult:
    machine = CryStateMachine(events)
    decided = [e for t, s in zip(recording.t, recording.score) for e in machine.update(float(t), float(s))]
    decided += machine.close(recording.duration_s)
    payloads = [event_payload(e, 0.0) for e in decided]
    return evaluate_file(recording.name, recording.scene, recording.annotations, payloads, recording.t,
                         recording.score, recording.duration_s)


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


@dataclass(frozen=True)
class Point:
    point: OperatingPoint
    hop: float
    counts: EventCounts
    negatives: EventCounts
    white_0db: EventCounts

    @property
    def negatives_fa_h(self) -> float:
        return self.negatives.false_alarms_per_hour or 0.0

    @property
    def cry_free_fa_h(self) -> float:
        return self.counts.false_alarms_per_hour or 0.0

    def row(self) -> str:
        c, p = self.counts, self.point
        return (f"| {self.hop:g} | {p.start_threshold} | {p.confirm_windows} of {p.of_windows} | "
                f"{c.detected_cries}/{c.cries} | "
                f"{fmt(c.precision)} | {fmt(c.f1, '.3f')} | {c.false_alarms} | {fmt(c.false_alarms_per_hour)} | "
                f"{fmt(self.negatives_fa_h)} | {self.white_0db.detected_cries}/{self.white_0db.cries} | "
                f"{fmt(c.latency_median)} | {fmt(c.latency_p95)} |")


HEADER = ("| hop (s) | start threshold | N of M | cries found | precision | F1 | false alarms | "
          "FA/h (all cry-free audio) | FA/h (negatives-only recordings) | white 0 dB | latency median (s) | p95 (s) |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")
PRESET_HEADER = "| preset " + HEADER.split("\n")[0] + "\n|---" + HEADER.split("\n")[1]


def evaluate(config: Config, point: OperatingPoint, recordings: list[Scored],
             hop: float) -> tuple[Point, list[FileResult]]:
    events = with_point(config.events, point)
    results = [replay(events, r) for r in recordings]
    total = sum((r.events for r in results), EventCounts())
    negatives = sum((r.events for r in results if r.scene == "negatives"), EventCounts())
    white = sum((r.events for r in results if r.file == "white_noise_0db"), EventCounts())
    return Point(point, hop, total, negatives, white), results


def choose(points: list[Point]) -> dict[str, tuple[Point, bool]]:
    def pick(ok, key) -> tuple[Point, bool]:
        feasible = [p for p in points if ok(p)]
        if not feasible:
            fewest = min(p.counts.false_alarms for p in points)
            feasible = [p for p in points if p.counts.false_alarms == fewest]
        best = max(feasible, key=lambda p: (key(p), -(p.counts.latency_median or 99), -p.counts.false_alarms))
        return best, any(ok(p) for p in points)

    return {
        "low": pick(lambda p: p.cry_free_fa_h <= 1.0, lambda p: p.counts.recall or 0),
        "medium": pick(lambda p: p.cry_free_fa_h <= 5.0, lambda p: p.counts.f1 or 0),
        "high": pick(lambda p: p.cry_free_fa_h <= 10.0, lambda p: p.counts.recall or 0),
    }


def goals_table(p: Point) -> str:
    c = p.counts
    rows = [("event F1, all scenes", "≥ 0.95", c.f1, lambda v: v >= 0.95, ".3f"),
            ("recall at 0 dB SNR under white noise", "≥ 0.90", p.white_0db.recall, lambda v: v >= 0.9, ".2f"),
            ("false alarms per hour, all cry-free audio", "≤ 1 (stretch 0.3)", p.cry_free_fa_h,
             lambda v: v <= 1.0, ".2f"),
            ("false alarms per hour, negatives-only recordings", "≤ 1 (stretch 0.3)", p.negatives_fa_h,
             lambda v: v <= 1.0, ".2f"),
            ("onset → cry_start latency, median", "≤ 1.0 s", c.latency_median, lambda v: v <= 1.0, ".2f"),
            ("onset → cry_start latency, p95", "≤ 2.0 s", c.latency_p95, lambda v: v <= 2.0, ".2f")]
    return ("| goal | target | measured | met |\n|---|---|---|---|\n"
            + "\n".join(f"| {name} | {target} | {fmt(v, spec)} | {'yes' if v is not None and ok(v) else '**no**'} |"
                        for name, target, v, ok, spec in rows))


def by_category(counts: EventCounts) -> str:
    """False alarms per category of the sound under them, as counts and per hour of all cry-free audio."""
    blamed = {k: 0 for k in NON_CRY} | counts.false_alarms_by_label  # "none": a false alarm on nothing annotated
    rate = counts.false_alarms_per_hour_by_label
    return " · ".join(f"{k} {n} ({rate.get(k, 0.0):.2f}/h)" for k, n in blamed.items())


def git_model(rev: str, folder: Path) -> Path:
    """The detector file and manifest of commit ``rev``, written to ``folder`` (so load_model checks its hash)."""
    for name in ("detector.pt", "manifest.json"):
        blob = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:models/{name}"], check=True,
                              capture_output=True).stdout
        (folder / name).write_bytes(blob)
    return folder / "detector.pt"


@dataclass(frozen=True)
class SweepReport:
    """What a sweep chose and measured, for the model cards (``models/detector.md``, the int8 card): the tables
    they quote (markdown, rendered here beside the operating-point card) and the medium preset's headline."""

    goals: str  # the medium preset against the project's goals
    hops: str  # each hop's own medium choice on the report set
    choices: str  # the presets chosen on the calibration set
    report: str  # the presets measured on the report set
    side_by_side: str  # beside the previous detector and any --compare model
    categories: str  # false alarms by the category of the sound under them
    synthetic: str  # the medium preset on the synthetic scenes (secondary)
    set_minutes: dict[str, int]  # minutes of audio per set (calibration, report, synthetic)
    hop: float  # seconds, the hop the presets were calibrated at
    medium_f1: float | None
    medium_recall: float | None
    medium_cry_free_fa_h: float

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> SweepReport:
        return cls(**json.loads(text))


def main(argv: list[str] | None = None) -> SweepReport:
    """Sweep, choose, record (``models/manifest.json``) and write the operating-point and soundscape cards."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODELS_DIR / "detector.pt")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the detector to compare with")
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        help="a calibrated detector file (e.g. a student's teacher) to measure beside it, at its own "
                             "medium preset and hop")
    parser.add_argument("--hop", type=float, help="calibrate at this hop only (an export keeps the hop of the model "
                                                  "it came from); default: 0.08 and 0.24 s for a streaming detector")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    config = Config()
    config = dataclasses.replace(config, classifier=dataclasses.replace(config.classifier, enabled=False))
    detector = CryDetector(dataclasses.replace(config.detector, model=args.model))
    hops = (args.hop,) if args.hop else HOPS if detector.streaming else (detector.hop_seconds,)
    finest = FRAME / SAMPLE_RATE if detector.streaming else min(hops)  # any hop is a subsample of these scores
    scored = {name: scored_set(s, config, detector, finest) for name, s in SETS.items()}

    def at(name: str, hop: float) -> list[Scored]:
        return [r.every(round(hop / finest)) for r in scored[name]]

    sweep = []
    for hop in hops:
        scale = max(1, round(REFERENCE_HOP / hop))
        calibration = at("calibration", hop)
        sweep += [evaluate(config, OperatingPoint(th, n * scale, m * scale), calibration, hop)[0]
                  for th, (n, m) in itertools.product(THRESHOLDS, N_OF_M)]
    hop = choose(sweep)["medium"][0].hop  # the medium rule picks the hop too; low and high follow it
    chosen = choose([p for p in sweep if p.hop == hop])
    write_operating_point(args.model.parent, args.model.name, {k: p.point for k, (p, _) in chosen.items()}, hop)
    sets = {name: at(name, hop) for name in SETS}

    choice_rows, report_rows, category_rows = [], [], []
    for preset, (calibrated, met) in chosen.items():
        p = calibrated.point
        choice_rows.append(f"| {preset} | {hop:g} | {p.start_threshold} | {p.confirm_windows} of {p.of_windows} | "
                           f"{'yes' if met else 'NO (fewest false alarms instead)'} |")
        measured, results = evaluate(config, p, sets["report"], hop)
        report_rows.append(f"| **{preset}** " + measured.row())
        category_rows.append(f"| {preset} | {by_category(measured.counts)} |")
        if preset == "medium":
            medium, medium_table = measured, report(results, p.start_threshold)[0]
            synthetic_point, synthetic_results = evaluate(config, p, sets["synthetic"], hop)
            synthetic_table = report(synthetic_results, p.start_threshold)[0]
    hop_rows = []  # each hop's own medium choice, measured on the report set: does a shorter hop buy latency?
    for other in hops:
        best = choose([p for p in sweep if p.hop == other])["medium"][0]
        hop_rows.append(evaluate(config, best.point, at("report", other), other)[0].row())

    with tempfile.TemporaryDirectory() as tmp:
        baseline = CryDetector(dataclasses.replace(config.detector, model=git_model(args.baseline, Path(tmp))))
        old, old_results = evaluate(config, BASELINE_POINT, scored_set(SETS["report"], config, baseline, BASELINE_HOP),
                                    BASELINE_HOP)
        old_table = report(old_results, BASELINE_POINT.start_threshold)[0]
        old_id = baseline.model_id
    compared = []
    for path in args.compare:
        other = CryDetector(dataclasses.replace(config.detector, model=path))
        fine = FRAME / SAMPLE_RATE if other.streaming else other.hop_seconds
        recordings = [r.every(round(other.hop_seconds / fine)) for r in
                      scored_set(SETS["report"], config, other, fine)]
        compared.append((f"{path.name} ({other.model_id})",
                         evaluate(config, other.presets["medium"], recordings, other.hop_seconds)[0]))
    minutes = {k: sum(r.duration_s for r in v) / 60 for k, v in sets.items()}
    side_by_side = "\n".join([
        "| model | medium preset | cries found | precision | F1 | FA/h (cry-free) | FA/h (negatives-only) | "
        "white 0 dB | latency median (s) | p95 (s) |", "|---|---|---|---|---|---|---|---|---|---|",
        *(f"| {name} | {pt.point.start_threshold}, {pt.point.confirm_windows} of {pt.point.of_windows}, "
          f"hop {pt.hop:g} s | "
          f"{pt.counts.detected_cries}/{pt.counts.cries} | {fmt(pt.counts.precision)} | {fmt(pt.counts.f1, '.3f')} | "
          f"{fmt(pt.cry_free_fa_h)} | {fmt(pt.negatives_fa_h)} | {pt.white_0db.detected_cries}/{pt.white_0db.cries} | "
          f"{fmt(pt.counts.latency_median)} | {fmt(pt.counts.latency_p95)} |"
          for name, pt in ((f"previous ({args.baseline}, {old_id})", old), *compared,
                           (f"this ({detector.model_id})", medium)))])
    categories = ("| preset | false alarms by the category under them (count, per hour of cry-free audio) |\n"
                  "|---|---|\n" + "\n".join(category_rows) + f"\n| previous model | {by_category(old.counts)} |")
    parts = SweepReport(
        goals=goals_table(medium),
        hops=HEADER + "\n" + "\n".join(hop_rows),
        choices=("| preset | hop (s) | start threshold | N of M | rule met |\n|---|---|---|---|---|\n"
                 + "\n".join(choice_rows)),
        report=PRESET_HEADER + "\n" + "\n".join(report_rows),
        side_by_side=side_by_side,
        categories=categories,
        synthetic=PRESET_HEADER + "\n| **medium** " + synthetic_point.row(),
        set_minutes={k: round(v) for k, v in minutes.items()},
        hop=hop, medium_f1=medium.counts.f1, medium_recall=medium.counts.recall,
        medium_cry_free_fa_h=medium.cry_free_fa_h,
    )
    stem = args.model.parent / args.model.stem
    Path(f"{stem}-operating-point.md").write_text(render(
        "operating-point.md", model=args.model.name, model_id=detector.model_id, minutes=minutes,
        events=config.events, parts=parts, hops=" and ".join(f"{h:g}" for h in hops), header=HEADER,
        sweep="\n".join(p.row() for p in sweep)))
    Path(f"{stem}-soundscapes.md").write_text(render(
        "soundscapes.md", model=args.model.name, model_id=detector.model_id, medium_table=medium_table,
        synthetic_table=synthetic_table, baseline=args.baseline, old_id=old_id, old_table=old_table))
    print(parts.to_json())
    return parts


if __name__ == "__main__":
    main()
