"""``crymonitor evaluate``: replay annotated recordings through the daemon's pipeline and report how it did.

    evaluate [--config PATH] [--out DIR] [--threshold X] [--tolerance S] AUDIO_OR_DIR...

Each audio file ``x.wav`` has its annotations in ``x.csv`` beside it; a directory stands for every such pair in
it (e.g. ``cache/soundscapes`` from ``tools/make_soundscapes.py``). A file's scene is taken from an
``index.json`` beside it (``files.<stem>.scene``), else it is the file's own stem. Prints one row per file, per
scene and overall, and writes ``metrics.json`` and a timeline ``<stem>.png`` per file into ``--out``. The
metrics and their rules are in :mod:`monitor.offline.evaluation`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from monitor import SAMPLE_RATE
from monitor.audio.files import AudioFileError
from monitor.config import Config, ConfigError, load_config
from monitor.core.presets import effective_events
from monitor.core.pipeline import Scorer
from monitor.inference.detect import make_detector
from monitor.inference.weights import ModelFileError
from monitor.logs import configure_logging
from monitor.offline.evaluation import (
    Annotation,
    Detection,
    FileResult,
    Summary,
    by_scene,
    detections_from_events,
    evaluate_file,
    read_annotations,
    summarize,
)
from monitor.offline.replay import Collector, replay_file

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def find_pairs(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(audio, annotations) pairs from files and directories; a file without its CSV is an error."""
    pairs = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES
                           and p.with_suffix(".csv").is_file())
            if not found:
                raise ValueError(f"{item}: no audio file with an annotation CSV beside it")
            pairs += [(p, p.with_suffix(".csv")) for p in found]
        elif not item.is_file():
            raise ValueError(f"{item}: no such file or directory")
        elif not item.with_suffix(".csv").is_file():
            raise ValueError(f"{item}: no annotations {item.with_suffix('.csv').name} beside it")
        else:
            pairs.append((item, item.with_suffix(".csv")))
    return pairs


def scene_of(audio: Path) -> str:
    index = audio.parent / "index.json"
    if index.is_file():
        entry = json.loads(index.read_text()).get("files", {}).get(audio.stem)
        if entry and "scene" in entry:
            return entry["scene"]
    return audio.stem


@dataclass(frozen=True)
class Replayed:
    """One file's result plus the raw series the timeline draws."""

    result: FileResult
    annotations: list[Annotation]
    detections: list[Detection]
    t: np.ndarray
    score: np.ndarray
    level_dbfs: np.ndarray


def evaluate_one(audio: Path, labels: list[Annotation], config: Config, scorer: Scorer,
                 tolerance_s: float) -> Replayed:
    collector = Collector()
    replay_file(str(audio), config, scorer, [collector])
    events, scores = collector.events, collector.windows
    t, score, level = (np.array([getattr(s, name) for s in scores]) for name in ("t", "score", "level_dbfs"))
    result = evaluate_file(audio.stem, scene_of(audio), labels, events, t, score, sf.info(str(audio)).duration,
                           tolerance_s, scorer.window_samples / SAMPLE_RATE)
    return Replayed(result, labels, detections_from_events(events), t, score, level)


def plot_timeline(path: Path, title: str, run: Replayed, threshold: float) -> None:
    """Level and score against time; annotated cries shaded, distractors hatched, detections as red bars."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    minutes = max(run.result.duration_s, 60.0) / 60
    fig, (level_ax, score_ax) = plt.subplots(2, 1, sharex=True, figsize=(min(40.0, 6 + 2.5 * minutes), 5.5),
                                             gridspec_kw={"height_ratios": [1, 1.4]})
    level_ax.plot(run.t, run.level_dbfs, lw=0.6, color="tab:gray")
    level_ax.set_ylabel("level (dBFS)")
    level_ax.set_title(title, fontsize=9)
    score_ax.plot(run.t, run.score, lw=0.7, color="tab:blue")
    score_ax.axhline(threshold, color="tab:red", ls="--", lw=0.8)
    for a in run.annotations:
        style = (dict(color="tab:orange", alpha=0.3) if a.is_cry
                 else dict(facecolor="none", edgecolor="tab:gray", hatch="//", alpha=0.3))
        for ax in (level_ax, score_ax):
            ax.axvspan(a.onset_s, a.offset_s, lw=0, **style)
        if not a.is_cry:
            level_ax.text(a.onset_s, 1.0, f" {a.label}", transform=level_ax.get_xaxis_transform(), fontsize=6,
                          va="top", color="dimgray", clip_on=True)
    score_ax.broken_barh([(d.start_s, d.end_s - d.start_s) for d in run.detections], (1.04, 0.08), color="tab:red")
    score_ax.set(ylim=(-0.02, 1.16), xlim=(0, run.result.duration_s), ylabel="cry score", xlabel="time (s)")
    score_ax.legend(handles=[Patch(color="tab:blue", label="window score"),
                             Patch(color="tab:red", label=f"detected cry; threshold {threshold:g} (dashed)"),
                             Patch(color="tab:orange", alpha=0.3, label="annotated cry"),
                             Patch(facecolor="none", edgecolor="tab:gray", hatch="//", label="distractor")],
                    loc="upper left", bbox_to_anchor=(0, -0.25), fontsize=7, ncol=4, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


COLUMNS = "{:<22} {:>6} {:>5} {:>5} {:>5} {:>5} {:>5} {:>6} {:>7} {:>7} {:>6} {:>6} {:>5}"


def format_row(s: Summary) -> str:
    return COLUMNS.format(s.name[:22], _fmt(s.hours * 60, ".1f"), s.cries, s.detections, _fmt(s.precision, ".2f"),
                          _fmt(s.recall, ".2f"), _fmt(s.f1, ".2f"), _fmt(s.false_alarms_per_hour, ".2f"),
                          _fmt(s.latency_median_s, ".2f"), _fmt(s.latency_p95_s, ".2f"), len(s.missed),
                          _fmt(s.window_auc, ".3f"), _fmt(s.window_f1, ".2f"))


def report(results: list[FileResult], threshold: float) -> tuple[str, dict]:
    """The printed table and the metrics.json content."""
    files = [summarize(r.file, [r], threshold) for r in results]
    scenes = [summarize(f"scene:{name}", group, threshold) for name, group in by_scene(results).items()]
    overall = summarize("overall", results, threshold)
    header = COLUMNS.format("file / scene", "min", "cries", "dets", "P", "R", "F1", "FA/h", "lat50", "lat95",
                            "missed", "AUC", "wF1")
    rule = "-" * len(header)
    lines = [header, rule, *map(format_row, files), rule, *map(format_row, scenes), rule, format_row(overall)]
    notes = [f"  missed: {m.file} {m.onset_s:.2f}–{m.offset_s:.2f} s" for m in overall.missed]
    if overall.false_alarms:
        notes.append("  false alarms by the sound under them (count, per hour of cry-free audio): "
                     + ", ".join(f"{label} {n} ({overall.false_alarms_per_hour_by_label[label]:.2f}/h)"
                                 for label, n in overall.false_alarms_by_label.items()))
    metrics = {"threshold": threshold, "files": {s.name: asdict(s) for s in files},
               "scenes": {s.name.removeprefix("scene:"): asdict(s) for s in scenes},
               "overall": asdict(overall)}
    return "\n".join(lines + notes), metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crymonitor evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", metavar="AUDIO_OR_DIR")
    parser.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")
    parser.add_argument("--out", type=Path, default=Path("out/evaluate"), help="folder for metrics.json and PNGs")
    parser.add_argument("--threshold", type=float,
                        help="window operating threshold (default: the start threshold of the sensitivity preset)")
    parser.add_argument("--tolerance", type=float, default=0.0, metavar="S",
                        help="seconds a detection may miss a cry by and still match it (default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        configure_logging(config.logging)
        annotated = [(audio, read_annotations(csv)) for audio, csv in find_pairs(args.inputs)]  # fail before replay
        detector = make_detector(config.detector)  # detector.kind: the CNN, or loudness only
        events = effective_events(config.events, config.events.sensitivity, config.detector, detector.presets)
        threshold = events.start_threshold if args.threshold is None else args.threshold
        args.out.mkdir(parents=True, exist_ok=True)
        results = []
        for audio, labels in annotated:
            run = evaluate_one(audio, labels, config, detector, args.tolerance)
            plot_timeline(args.out / f"{audio.stem}.png", f"{audio.name} (scene {run.result.scene})", run, threshold)
            results.append(run.result)
            print(f"{audio.name}: {len(run.detections)} detection(s)", file=sys.stderr)
    except (ConfigError, AudioFileError, ModelFileError, ValueError) as exc:
        print(f"crymonitor: error: {exc}", file=sys.stderr)
        return 2
    table, metrics = report(results, threshold)
    metrics["tolerance_s"] = args.tolerance
    metrics["detector"] = detector.model_id
    metrics["events_config"] = asdict(events)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.out / "report.txt").write_text(table + "\n")
    print(table)
    print(f"wrote {args.out / 'metrics.json'}, report.txt and {len(results)} timeline(s)")
    return 0
