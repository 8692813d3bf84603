#!/usr/bin/env python3
"""Benchmark: how much faster than real time the pipeline runs, the per-window cost of a live stream, and how
long the reason classifier takes on a cry's audio.

    python tools/bench_replay.py [FILE] [--repeats 5]

Prints medians over the repeats, all measured in this one run: replay speed (audio seconds per wall second,
windows batched as in `crymonitor replay`) and the live-style cost (0.1 s chunks, as the daemon feeds them),
as milliseconds per window and as a fraction of the hop; the verifier's cost per call; then the classifier's time on the audio it gets at its
first and refined answers (lookback + 2 s, lookback + 6 s), and so when a reason is published after cry_start.
Numbers on a shared, noisy machine: compare ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor import SAMPLE_RATE  # noqa: E402
from monitor.audio import read_file  # noqa: E402
from monitor.classify import ReasonClassifier  # noqa: E402
from monitor.config import Config  # noqa: E402
from monitor.detect import CryDetector  # noqa: E402
from monitor.pipeline import Pipeline  # noqa: E402

DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared/data/notcry/music/asterisk-moh/manolo_camp-morning_coffee.flac"


def run(audio: np.ndarray, config: Config, detector: CryDetector, chunk: int) -> tuple[float, int]:
    pipeline = Pipeline(config, detector)
    started = time.perf_counter()
    windows = sum(len(pipeline.feed(audio[i : i + chunk]).scores) for i in range(0, audio.size, chunk))
    return time.perf_counter() - started, windows


def median_seconds(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", default=str(DEFAULT))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = Config()
    detector = CryDetector(config.detector)
    audio = read_file(args.file)
    seconds = audio.size / SAMPLE_RATE
    replay = [run(audio, config, detector, 5 * SAMPLE_RATE) for _ in range(args.repeats)]
    live = [run(audio, config, detector, SAMPLE_RATE // 10) for _ in range(args.repeats)]
    windows = replay[0][1]
    replay_s = statistics.median(t for t, _ in replay)
    live_s = statistics.median(t for t, _ in live)
    print(f"file: {args.file} ({seconds:.1f} s, {windows} windows, threads={config.detector.threads})")
    print(f"replay (5 s blocks, batched windows): median {replay_s:.2f} s → {seconds / replay_s:.1f}× real time")
    print(f"live   (0.1 s chunks):                median {live_s:.2f} s → {seconds / live_s:.1f}× real time, "
          f"{1000 * live_s / windows:.1f} ms per window = {live_s / windows / config.detector.hop_seconds:.1%} of the hop")
    print(f"batched / live speed ratio: {live_s / replay_s:.2f}")
    if detector.verifier_seconds:  # asked only when the detector would start a cry, then once per window at most
        n = round(detector.verifier_seconds * SAMPLE_RATE)
        took = median_seconds(lambda: detector.verify(audio[:n]), args.repeats)
        print(f"verifier ({detector.verifier_seconds:.0f} s of audio): median {1000 * took:.0f} ms per call = "
              f"{took / config.detector.hop_seconds:.0%} of a hop, only while the detector would start a cry")
    classifier = ReasonClassifier(config.classifier)
    for after in config.classifier.at_seconds():
        n = round((after + config.classifier.lookback_seconds) * SAMPLE_RATE)
        took = median_seconds(lambda: classifier.classify(audio[:n]), args.repeats)
        print(f"classifier ({classifier.entry.kwargs['backbone']}, {n / SAMPLE_RATE:.1f} s of audio): median "
              f"{1000 * took:.0f} ms → reason published {after + took:.2f} s after cry_start")


if __name__ == "__main__":
    main()
