#!/usr/bin/env python3
"""Benchmark: how much faster than real time the pipeline runs, what a second of audio costs the detector, and
how long the reason classifier takes on a cry's audio.

    python tools/bench_replay.py [FILE] [--repeats 5]

Prints medians over the repeats, all measured in this one run: replay speed (audio seconds per wall second, 5 s
blocks as in `crymonitor replay`) and the live cost (0.1 s chunks, as the daemon feeds them) in milliseconds per
second of audio, at the configured hop and at the finest one (streaming: the same cost), beside the same model
scoring each window on its own at the configured hop (what the window-form detector did); then the classifier's
time on the audio it gets at its first and refined answers (lookback + 2 s, lookback + 6 s), and so when a
reason is published after cry_start. Numbers on a shared, noisy machine: compare ratios.
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
from monitor.config import override  # noqa: E402
from monitor.detect import CryDetector  # noqa: E402
from monitor.models.streaming_cnn10 import FRAME  # noqa: E402
from monitor.pipeline import Pipeline  # noqa: E402

DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared/data/notcry/music/asterisk-moh/manolo_camp-morning_coffee.flac"


def run(audio: np.ndarray, config: Config, detector: CryDetector, chunk: int) -> tuple[float, int]:
    pipeline = Pipeline(config, detector)
    started = time.perf_counter()
    windows = sum(len(pipeline.feed(audio[i : i + chunk]).scores) for i in range(0, audio.size, chunk))
    return time.perf_counter() - started, windows


def window_by_window(audio: np.ndarray, detector: CryDetector, hop: int) -> None:
    n = detector.window_samples
    for end in range(n, audio.size + 1, hop):
        detector.score_windows(audio[None, end - n : end])


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
    finest = override(config, "detector", hop_seconds=FRAME / SAMPLE_RATE)
    live_fine = [run(audio, finest, detector, SAMPLE_RATE // 10) for _ in range(args.repeats)]
    hop_s = config.detector.hop_seconds or detector.hop_seconds
    hop = round(hop_s * SAMPLE_RATE)
    per_window_s = median_seconds(lambda: window_by_window(audio, detector, hop), args.repeats)
    windows = replay[0][1]
    replay_s = statistics.median(t for t, _ in replay)
    live_s = statistics.median(t for t, _ in live)
    fine_s = statistics.median(t for t, _ in live_fine)
    print(f"file: {args.file} ({seconds:.1f} s, {windows} windows, threads={config.detector.threads}, "
          f"model {detector.model_id})")
    print(f"replay (5 s blocks):                       median {replay_s:.2f} s → {seconds / replay_s:.1f}× real time")
    for name, took in ((f"live, hop {hop_s:g} s (0.1 s chunks)", live_s),
                       (f"live, hop {FRAME / SAMPLE_RATE:g} s (0.1 s chunks)", fine_s),
                       (f"window by window, hop {hop_s:g} s", per_window_s)):
        print(f"{name:42} {1000 * took / seconds:6.1f} ms per second of audio → {seconds / took:.1f}× real time")
    print(f"streaming vs window by window at hop {hop_s:g} s: {per_window_s / live_s:.2f}× less CPU; "
          f"hop {FRAME / SAMPLE_RATE:g} s costs {fine_s / live_s:.2f}× hop {hop_s:g} s")
    classifier = ReasonClassifier(config.classifier)
    for after in config.classifier.at_seconds():
        n = round((after + config.classifier.lookback_seconds) * SAMPLE_RATE)
        took = median_seconds(lambda: classifier.classify(audio[:n]), args.repeats)
        print(f"classifier ({classifier.entry.kwargs['backbone']}, {n / SAMPLE_RATE:.1f} s of audio): median "
              f"{1000 * took:.0f} ms → reason published {after + took:.2f} s after cry_start")


if __name__ == "__main__":
    main()
