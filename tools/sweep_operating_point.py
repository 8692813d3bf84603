#!/usr/bin/env python3
"""Calibrate the detector's operating point and sensitivity presets on one set of soundscapes, measure them on
another, and write the tables the model card quotes.

    python tools/sweep_operating_point.py     # writes models/detector-operating-point.md, detector-soundscapes.md

Two seeded soundscape sets are built by tools/make_soundscapes.py from the same held-out groups (if missing):
*calibration* (seed 2, cache/soundscapes-cal) chooses, *report* (seed 1, cache/soundscapes) measures, so the
reported numbers are not those the choice was fitted to (they share babies and sources, so they are still a
friendly test; see the card's limits). Each recording is scored once by the shipped detector; the event state
machine is then replayed for every candidate (start threshold × N of M; end threshold, hold and cool-down are
the config's). Choices on the calibration set:

- ``medium`` (the default): best event F1 with at most 0.3 false alarms per hour on negatives-only audio (the
  issue's goal; with 20 minutes of negatives that means none);
- ``low`` (fewest alarms): best recall with no false alarm at all on the calibration set;
- ``high`` (hear more, sooner): best recall with at most 10 false alarms per hour of all non-cry audio.

Ties go to the lower median latency, then to fewer false alarms. A rule no candidate meets falls back to the
fewest false alarms, and the table says so. Window scores are cached per model (cache/sweep/), so changing a
rule costs seconds, not a re-scoring. The chosen values are then copied by hand into monitor/config.py and config/crymonitor.yaml
(tests check those two agree); this tool checks and says whether they match.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import make_soundscapes  # noqa: E402

from monitor.config import Config, EventsConfig, effective_events  # noqa: E402
from monitor.detect import CryDetector  # noqa: E402
from monitor.evaluate_cli import report  # noqa: E402
from monitor.evaluation import EventCounts, FileResult, evaluate_file, read_annotations  # noqa: E402
from monitor.events import CryStateMachine, event_payload  # noqa: E402
from monitor.pipeline import Pipeline  # noqa: E402

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
N_OF_M = ((2, 2), (2, 3), (3, 3), (3, 4), (4, 5), (5, 6), (6, 8))
SETS = {"calibration": (2, ROOT / "cache" / "soundscapes-cal"), "report": (1, ROOT / "cache" / "soundscapes")}


@dataclass
class Scored:
    name: str
    scene: str
    duration_s: float
    annotations: list
    t: np.ndarray
    score: np.ndarray


def scored_set(folder: Path, seed: int, config: Config, detector: CryDetector) -> list[Scored]:
    if not (folder / "index.json").exists():
        make_soundscapes.main(["--seed", str(seed), "--out", str(folder)])
    index = json.loads((folder / "index.json").read_text())
    cache = ROOT / "cache" / "sweep" / f"{folder.name}-{detector.model_id}.npz"
    stored = dict(np.load(cache)) if cache.exists() else {}
    out = []
    for name, entry in index["files"].items():
        if f"{name}/t" not in stored:
            audio, _ = sf.read(folder / f"{name}.wav", dtype="float32")
            scores = Pipeline(config, detector).feed(audio).scores
            stored[f"{name}/t"] = np.array([s.t for s in scores])
            stored[f"{name}/score"] = np.array([s.score for s in scores])
            stored[f"{name}/duration"] = np.array(audio.size / 16000)
            print(f"scored {folder.name}/{name}", flush=True)
        out.append(Scored(name, entry["scene"], float(stored[f"{name}/duration"]),
                          read_annotations(folder / f"{name}.csv"), stored[f"{name}/t"], stored[f"{name}/score"]))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **stored)
    return out


def replay(events: EventsConfig, recording: Scored) -> FileResult:
    machine = CryStateMachine(events)
    decided = [e for t, s in zip(recording.t, recording.score) for e in machine.update(float(t), float(s))]
    decided += machine.close(recording.duration_s)
    payloads = [event_payload(e, 0.0) for e in decided]
    return evaluate_file(recording.name, recording.scene, recording.annotations, payloads, recording.t,
                         recording.score, recording.duration_s)


@dataclass(frozen=True)
class Point:
    threshold: float
    n: int
    m: int
    counts: EventCounts
    negatives: EventCounts
    white_0db: EventCounts

    @property
    def negatives_fa_h(self) -> float:
        return self.negatives.false_alarms_per_hour or 0.0

    def row(self) -> str:
        c = self.counts

        def f(x, spec=".2f"):
            return "–" if x is None else format(x, spec)

        return (f"| {self.threshold} | {self.n} of {self.m} | {c.detected_cries}/{c.cries} | {f(c.precision)} | "
                f"{f(c.f1, '.3f')} | {c.false_alarms} | {f(c.false_alarms_per_hour)} | {f(self.negatives_fa_h)} | "
                f"{self.white_0db.detected_cries}/{self.white_0db.cries} | {f(c.latency_median)} | {f(c.latency_p95)} |")


HEADER = ("| start threshold | N of M | cries found | precision | F1 | false alarms | FA/h (all non-cry audio) | "
          "FA/h (negatives only) | white 0 dB | latency median (s) | p95 (s) |\n|---|---|---|---|---|---|---|---|---|---|---|")


def evaluate(config: Config, threshold: float, n: int, m: int, recordings: list[Scored]) -> tuple[Point, list]:
    events = dataclasses.replace(config.events, start_threshold=threshold, confirm_windows=n, of_windows=m,
                                 end_threshold=min(config.events.end_threshold, threshold))
    results = [replay(events, r) for r in recordings]
    total = sum((r.events for r in results), EventCounts())
    negatives = sum((r.events for r in results if r.scene == "negatives"), EventCounts())
    white = sum((r.events for r in results if r.file == "white_noise_0db"), EventCounts())
    return Point(threshold, n, m, total, negatives, white), results


def choose(points: list[Point]) -> dict[str, tuple[Point, bool]]:
    def pick(ok, key) -> tuple[Point, bool]:
        feasible = [p for p in points if ok(p)]
        if not feasible:
            fewest = min(p.counts.false_alarms for p in points)
            feasible = [p for p in points if p.counts.false_alarms == fewest]
        return max(feasible, key=lambda p: (key(p), -(p.counts.latency_median or 99), -p.counts.false_alarms)), bool(
            [p for p in points if ok(p)])

    return {
        "low": pick(lambda p: p.counts.false_alarms == 0, lambda p: p.counts.recall or 0),
        "medium": pick(lambda p: p.negatives_fa_h <= 0.3, lambda p: p.counts.f1 or 0),
        "high": pick(lambda p: (p.counts.false_alarms_per_hour or 0) <= 10.0, lambda p: p.counts.recall or 0),
    }


def goals_table(p: Point) -> str:
    c = p.counts
    rows = [("event F1, all scenes", "≥ 0.95", c.f1, lambda v: v >= 0.95, ".3f"),
            ("recall at 0 dB SNR under white noise", "≥ 0.90",
             p.white_0db.recall, lambda v: v >= 0.9, ".2f"),
            ("false alarms per hour, negatives-only audio", "≤ 0.3", p.negatives_fa_h, lambda v: v <= 0.3, ".2f"),
            ("onset → cry_start latency, median", "≤ 1.0 s", c.latency_median, lambda v: v <= 1.0, ".2f"),
            ("onset → cry_start latency, p95", "≤ 1.5 s", c.latency_p95, lambda v: v <= 1.5, ".2f")]
    return "\n".join(f"| {name} | {target} | {'–' if v is None else format(v, spec)} | "
                     f"{'yes' if v is not None and ok(v) else '**no**'} |" for name, target, v, ok, spec in rows)


def main() -> tuple[str, str]:
    """Run the sweep and the report; returns (the presets' markdown, the goals table rows) for the model card."""
    torch.set_num_threads(2)
    config = Config()
    config = dataclasses.replace(config, classifier=dataclasses.replace(config.classifier, enabled=False))
    detector = CryDetector(config.detector)
    sets = {name: scored_set(folder, seed, config, detector) for name, (seed, folder) in SETS.items()}
    sweep = [evaluate(config, th, n, m, sets["calibration"])[0]
             for th, (n, m) in itertools.product(THRESHOLDS, N_OF_M)]
    chosen = choose(sweep)
    shipped = {s: effective_events(config.events, s) for s in ("low", "medium", "high")}
    rows, report_rows, consistent = [], [], True
    for preset, (point, met) in chosen.items():
        events = shipped[preset]
        matches = (events.start_threshold, events.confirm_windows, events.of_windows) == (point.threshold, point.n, point.m)
        consistent &= matches
        rows.append(f"| {preset} | {point.threshold} | {point.n} of {point.m} | {'yes' if met else 'NO (fewest false alarms instead)'} "
                    f"| {'yes' if matches else 'NO: ' + str((events.start_threshold, events.confirm_windows, events.of_windows))} |")
        measured, results = evaluate(config, events.start_threshold, events.confirm_windows, events.of_windows,
                                     sets["report"])
        report_rows.append(f"| **{preset}** " + measured.row())
        if preset == "medium":
            table, _ = report(results, events.start_threshold)
            goals = goals_table(measured)
    report_head = "| preset " + HEADER.split("\n")[0] + "\n|---" + HEADER.split("\n")[1]
    minutes = {k: sum(r.duration_s for r in v) / 60 for k, v in sets.items()}
    text = f"""# Operating point and sensitivity presets (models/detector.pt {detector.model_id})

Written by `python tools/sweep_operating_point.py` (rules in its docstring). Calibration soundscapes: seed 2,
{minutes['calibration']:.0f} min; report soundscapes: seed 1, {minutes['report']:.0f} min (tools/make_soundscapes.py; held-out
groups only). End threshold {config.events.end_threshold}, hold {config.events.end_hold_seconds} s, cool-down
{config.events.cooldown_seconds} s for every row. FA/h = false alarms per hour; "white 0 dB" = cries found in the
white-noise recording with cries at 0 dB SNR.

## Chosen on the calibration set

| preset | start threshold | N of M | rule met | shipped config matches |
|---|---|---|---|---|
{chr(10).join(rows)}

## Measured on the report set (the numbers to quote)

{report_head}
{chr(10).join(report_rows)}

## The calibration sweep

{HEADER}
{chr(10).join(p.row() for p in sweep)}
"""
    (ROOT / "models" / "detector-operating-point.md").write_text(text)
    (ROOT / "models" / "detector-soundscapes.md").write_text(
        f"# Report soundscapes at the default (medium) preset (models/detector.pt {detector.model_id})\n\n"
        f"Written by `python tools/sweep_operating_point.py` (the same table as `crymonitor evaluate "
        f"cache/soundscapes`). min = minutes; dets = detections; FA/h = false alarms per hour of non-cry audio; "
        f"lat50/lat95 = onset → cry_start latency (s); AUC/wF1 = window level at the start threshold.\n\n"
        f"```\n{table}\n```\n")
    print(text)
    presets = text.split("## Chosen on the calibration set", 1)[1].split("## The calibration sweep", 1)[0]
    presets = "Chosen on the calibration set:" + presets.replace("## Measured on the report set (the numbers to quote)",
                                                                "Measured on the report set:")
    if not consistent:
        print("the shipped presets differ from the calibrated choice: update monitor/config.py and "
              "config/crymonitor.yaml", file=sys.stderr)
    return presets.strip(), goals


if __name__ == "__main__":
    main()
