#!/usr/bin/env python3
"""Detectors side by side, the default's presets chosen, and the table the detector card quotes.

    python tools/compare_detectors.py [--calibrate models/detector-yamnet-lwf-int8.onnx] [--detector NAME=PATH ...]

Sets (built if missing; every sound from groups that training never saw):
- *nursery calibration*: ``tools/make_nursery_soundscapes.py`` with seeds 24, 25 and 26, pooled (546 minutes, 390
  of them cry-free): chooses every operating point here;
- *nursery report*: the same builder, seeds 23, 27 and 28, pooled: **the headline** (other rooms, mixtures, gains
  and offsets);
- *old report*: ``tools/make_real_soundscapes.py --seed 11`` (close-mic 8 kHz cries), kept to show how the two
  validations disagree.

Each detector's window scores are computed once per set through the daemon's own ``Pipeline`` at a 0.24 s hop
(cached in ``cache/sweep/``, :func:`monitor.training.operating_point.scored_set`). The event state machine is then
replayed for every operating point (start threshold × N of M; end threshold, hold and cool-down are the defaults).
Only the 0.24 s hop is tried since 2026-12-07: at 500× real time in a replay, the saving of a 0.48 s hop no longer
matters, and its coarser N of M grid made one point all three presets of the int8 model on the three calibration
sets.

Rows, each measured on the two report sets:
- the previous default (int8 CNN10) at its shipped medium preset;
- **YAMNet out of the box** (``Baby cry, infant cry``) at the two points the issue measured on the recordings kept
  aside (0.1 and 0.3, 4 of 5);
- every detector at the medium point the calibration set chooses for it by the rule below (so no detector is
  tuned on the set it is reported on);
- two detectors that must agree (the smaller of CNN10's and YAMNet's score, CNN10's read at the window ending
  nearest in time), also at its own calibrated point.

Preset rules. Each preset aims at a false-alarm rate *in a home*: **low** 1 an hour, **medium** (the default) 3 (issue
20's goal), **high** 10. Our held-out negatives are far easier than a home: on the recordings kept aside for judging,
the int8 CNN10 at its shipped medium raised 28 false alarms an hour and YAMNet out of the box at 0.1, 4 of 5 raised
12 (issue 20), against what each raises on the calibration sets here (measured at every run, in the card: about 10×
and 23× fewer). A home's rate is divided by the smaller of the two factors, the one that allows more false alarms
here. On the calibration sets' cry-free audio, each preset is then the point with the most cries within its limit:
medium first (it picks the hop); low among points at least as strict as medium (threshold and windows); high among
points whose threshold is at most medium's. Ties go to the lower median onset latency, then the larger hop (half the
cost), then fewer false alarms. Until 2026-12-07 the limits were 0, 1 and 3 an hour *here*, on one calibration set:
by these factors, 10 to 23 an hour in a home for medium.

``--calibrate MODEL`` records the chosen presets and hop in that model's manifest entry.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.config import Config
from monitor.core.presets import OperatingPoint
from monitor.inference.detect import CryDetector
from monitor.inference.weights import MODELS_DIR, write_operating_point
from monitor.training import nursery_soundscapes
from monitor.training.operating_point import SETS, Point, Scored, SoundscapeSet, by_category, evaluate, fmt, scored_set

ROOT = Path(__file__).resolve().parents[2]
SCORED_HOP = 0.24
HOPS = (0.24,)  # the hops tried (module docstring); a longer one keeps every n-th window, as the pipeline would


def nursery(seed: int) -> SoundscapeSet:
    """The nursery set of ``seed``: the first two built keep their folders (docs and tests name them)."""
    folder = {nursery_soundscapes.DEFAULT_SEED: "nursery-soundscapes",
              24: "nursery-soundscapes-calibration"}.get(seed, f"nursery-soundscapes-seed{seed}")
    return SoundscapeSet(nursery_soundscapes, seed, ROOT / "cache" / folder)


# Three seeds on each side: 6.5 hours of cry-free audio each, so a rate of 1 false alarm per hour is 6 of them,
# not 2 (one seed, as first built, left the report's rule to a single false alarm)
CALIBRATION = tuple(nursery(seed) for seed in (24, 25, 26))
REPORTS = {"nursery report": tuple(nursery(seed) for seed in (nursery_soundscapes.DEFAULT_SEED, 27, 28)),
           "old report": (SETS["report"],)}
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999)
N_OF_M = ((1, 1), (2, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 8))  # windows at 0.24 s; scaled at a longer hop
HOME_LIMITS = {"low": 1.0, "medium": 3.0, "high": 10.0}  # false alarms per hour in a home (module docstring)
KEPT_ASIDE_FA_H = 28.0, 12.0  # issue 20: the int8 CNN10 at its shipped medium, YAMNet out of the box at 0.1, 4 of 5
CNN10 = "CNN10 int8 (previous default)"
YAMNET = "YAMNet out of the box"
AGREE = "CNN10 and YAMNet must agree"
DETECTORS = {CNN10: MODELS_DIR / "detector-int8.onnx", YAMNET: MODELS_DIR / "detector-yamnet.onnx",
             "YAMNet fine-tuned without forgetting, fp32": MODELS_DIR / "detector-yamnet-lwf.onnx",
             "YAMNet fine-tuned without forgetting, int8 (default)": MODELS_DIR / "detector-yamnet-lwf-int8.onnx"}


def agreeing(a: list[Scored], b: list[Scored]) -> list[Scored]:
    """Per recording, ``b``'s windows scored by the smaller of the two detectors' scores (``a`` read at the
    window that ends nearest in time)."""
    out = []
    for x, y in zip(a, b, strict=True):
        nearest = np.clip(np.searchsorted(x.t, y.t), 0, x.t.size - 1)
        out.append(dataclasses.replace(y, score=np.minimum(y.score, x.score[nearest])))
    return out


def at_hop(recordings: list[Scored], hop: float) -> list[Scored]:
    return [r.every(round(hop / SCORED_HOP)) for r in recordings]


def sweep(config: Config, recordings: list[Scored]) -> list[Point]:
    points = []
    for hop in HOPS:
        step = round(hop / SCORED_HOP)
        points += [evaluate(config, OperatingPoint(t, max(1, round(n / step)), max(1, round(m / step))),
                            at_hop(recordings, hop), hop)[0]
                   for t, (n, m) in itertools.product(THRESHOLDS, N_OF_M)]
    return points


def choose(points: list[Point], limits: dict[str, float]) -> dict[str, Point]:
    """Each preset's point within its ``limits`` (false alarms per hour of cry-free calibration audio; the module
    docstring says how they are set); a limit nothing meets takes the fewest
    false alarms. Medium is chosen first, and picks the hop (a model's entry has one: N of M counts windows);
    ``low`` must then be at least as strict in both threshold and windows (and not medium's point: when medium
    already raised none on calibration, low is still a stricter choice), and ``high`` no stricter in threshold. Without that, a short window at a very high threshold can win ``low`` on
    calibration by one false alarm and then raise more false alarms than ``medium`` elsewhere (it did: the
    int8 model's (0.995, 2 of 3) found 41 of 66 cries with 4 false alarms where its medium found 57 with 6)."""
    def pick(candidates: list[Point], limit: float) -> Point:
        feasible = [p for p in candidates if p.cry_free_fa_h <= limit + 1e-9]
        if not feasible:
            fewest = min(p.counts.false_alarms for p in candidates)
            feasible = [p for p in candidates if p.counts.false_alarms == fewest]
        return max(feasible, key=lambda p: (p.counts.detected_cries, -(p.counts.latency_median or 99), p.hop,
                                            -p.counts.false_alarms))

    medium = pick(points, limits["medium"])
    m = medium.point
    stricter = [p for p in points if p.hop == medium.hop and p.point.start_threshold >= m.start_threshold
                and p.point.confirm_windows >= m.confirm_windows and p.point != m]  # low is never medium itself
    looser = [p for p in points if p.hop == medium.hop and p.point.start_threshold <= m.start_threshold]
    return {"low": pick(stricter, limits["low"]) if stricter else medium, "medium": medium,
            "high": pick(looser, limits["high"])}


@dataclass(frozen=True)
class Row:
    name: str
    point: OperatingPoint
    hop: float

    def measure(self, config: Config, recordings: list[Scored]) -> Point:
        return evaluate(config, self.point, at_hop(recordings, self.hop), self.hop)[0]


def reaction(recordings: list[Scored], threshold: float) -> str:
    """How soon the model itself hears each cry: the first window at or above ``threshold`` ending after the cry's
    onset (and before its end plus a second), as a median and 95th percentile over the cries that have one. The
    gap between this and the onset latency of ``cry_start`` is what confirming over N of M windows costs."""
    delays, cries = [], 0
    for r in recordings:
        for cry in (a for a in r.annotations if a.label == "cry"):
            cries += 1
            heard = r.t[(r.t > cry.onset_s) & (r.t <= cry.offset_s + 1.0) & (r.score >= threshold)]
            if heard.size:
                delays.append(float(heard[0] - cry.onset_s))
    return (f"{len(delays)}/{cries} cries reach {threshold:g} in some window, the first of them "
            f"{np.median(delays):.2f} s (median) / {np.percentile(delays, 95):.2f} s (p95) after the onset")


def row(row: Row, p: Point) -> str:
    c, o = p.counts, row.point
    return (f"| {row.name} | {o.start_threshold:g}, {o.confirm_windows} of {o.of_windows}, hop {row.hop:g} s | "
            f"{c.detected_cries}/{c.cries} | {c.false_alarms} | {fmt(p.cry_free_fa_h)} | "
            f"{p.white_0db.detected_cries}/{p.white_0db.cries} | {fmt(c.latency_median)} / {fmt(c.latency_p95)} |")


HEADER = ("| detector | operating point | cries found | false alarms | FA/h (cry-free audio) | white noise 0 dB | "
          "onset latency median / p95 (s) |\n|---|---|---|---|---|---|---|")


def scores(config: Config, soundscapes: tuple[SoundscapeSet, ...],
           detectors: dict[str, Path]) -> dict[str, list[Scored]]:
    """Each detector's scored recordings of all the sets, pooled."""
    out = {}
    for name, path in detectors.items():
        detector_config = dataclasses.replace(config.detector, model=Path(path))
        detector = CryDetector(detector_config)
        out[name] = [recording for one in soundscapes for recording in scored_set(
            one, dataclasses.replace(config, detector=detector_config), detector, SCORED_HOP)]
    out[AGREE] = agreeing(out[CNN10], out[YAMNET])
    return out


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibrate", type=Path, help="record the presets chosen for this model in its manifest entry")
    parser.add_argument("--detector", action="append", default=[], metavar="NAME=PATH",
                        help="another detector to measure (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "detector-comparison.md")
    args = parser.parse_args(argv)
    config = Config()
    config = dataclasses.replace(config, classifier=dataclasses.replace(config.classifier, enabled=False))
    detectors = DETECTORS | {name: Path(path) for name, path in (item.split("=", 1) for item in args.detector)}

    calibration = scores(config, CALIBRATION, detectors)
    references = [Row(f"{CNN10}, its shipped medium", CryDetector(dataclasses.replace(
                      config.detector, model=DETECTORS[CNN10])).presets["medium"], 0.24),
                  Row(f"{YAMNET}, the issue's point", OperatingPoint(0.1, 4, 5), 0.24)]
    here = [r.measure(config, calibration[name]).cry_free_fa_h for r, name in zip(references, (CNN10, YAMNET))]
    factors = [home / max(ours, 1e-9) for home, ours in zip(KEPT_ASIDE_FA_H, here)]
    limits = {k: v / min(factors) for k, v in HOME_LIMITS.items()}
    presets = {name: choose(sweep(config, recordings), limits) for name, recordings in calibration.items()}
    shipped = CryDetector(config.detector)
    rows = [*references,
            Row(f"{YAMNET}, the issue's point", OperatingPoint(0.3, 4, 5), 0.24),
            *(Row(f"{name}, calibrated medium", chosen["medium"].point, chosen["medium"].hop)
              for name, chosen in presets.items())]
    calibrating = next((n for n, p in detectors.items() if args.calibrate
                        and Path(p).resolve() == args.calibrate.resolve()), None)
    if calibrating:  # the other two presets of the model being calibrated
        rows += [Row(f"{calibrating}, calibrated {k}", presets[calibrating][k].point, presets[calibrating][k].hop)
                 for k in ("low", "high")]
    sections = []
    for set_name, soundscapes in REPORTS.items():
        reported = scores(config, soundscapes, detectors)
        source = {r.name: reported[next(n for n in reported if r.name.startswith(n))] for r in rows}
        measured = [(r, r.measure(config, source[r.name])) for r in rows]
        categories = "\n".join(f"- {r.name}: {by_category(p.counts)}" for r, p in measured
                               if r.name.endswith("calibrated medium"))
        reactions = "\n".join(f"- {r.name}: {reaction(source[r.name], r.point.start_threshold)}" for r in rows
                              if r.name.endswith("calibrated medium"))
        minutes = sum(x.duration_s for x in next(iter(reported.values()))) / 60
        folders = ", ".join(one.folder.name for one in soundscapes)
        sections.append(f"### {set_name} ({folders}; {minutes:.0f} min)\n\n{HEADER}\n"
                        + "\n".join(row(r, p) for r, p in measured)
                        + f"\n\nFalse alarms by the sound under them (count, per hour of cry-free audio):\n{categories}\n"
                        + f"\nHow soon each model hears a cry at its medium threshold, before N of M confirm it:\n"
                        + f"{reactions}\n")
        print(sections[-1], flush=True)
    preset_lines = []
    for name, chosen in presets.items():
        preset_lines.append(f"- {name}: " + "; ".join(
            f"{k} {p.point.start_threshold:g}, {p.point.confirm_windows} of {p.point.of_windows} at {p.hop:g} s "
            f"({p.counts.detected_cries}/{p.counts.cries}, {fmt(p.cry_free_fa_h)} FA/h)" for k, p in chosen.items()))
    text = ("Written by `python tools/compare_detectors.py` (rules in its docstring). The default detector is "
            f"`{shipped.entry.file}` ({shipped.model_id}).\n\n"
            f"From a home to these sets: on the calibration sets the int8 CNN10 at its shipped medium raises "
            f"{here[0]:.2f} false alarms an hour (28 on the recordings kept aside: {factors[0]:.1f}×) and YAMNet out "
            f"of the box at 0.1, 4 of 5 raises {here[1]:.2f} (12 there: {factors[1]:.1f}×). Divided by "
            f"{min(factors):.1f}, the presets' limits here are low {limits['low']:.2f}, medium {limits['medium']:.2f} "
            f"and high {limits['high']:.2f} false alarms an hour.\n\n"
            f"Presets chosen on the nursery calibration sets (seeds {', '.join(str(c.seed) for c in CALIBRATION)}), "
            "as found / false alarms per hour there:\n"
            + "\n".join(preset_lines) + "\n\n" + "\n".join(sections))
    if calibrating:
        write_operating_point(args.calibrate.parent, args.calibrate.name,
                              {k: p.point for k, p in presets[calibrating].items()}, presets[calibrating]["medium"].hop)
    args.out.write_text("# Detectors side by side\n\n" + text)
    print(f"wrote {args.out}")
    return text


if __name__ == "__main__":
    main()
