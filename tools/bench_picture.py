#!/usr/bin/env python3
"""Benchmark the *Last cry* picture (monitor/service/picture.py): what it costs at ``cry_end`` and while a cry goes on.

    taskset -c 0 python tools/bench_picture.py [FILE] [--repeats 21]

For cries of 10 s, 60 s and 600 s (``events.max_duration_seconds``; the spectrum's bins have merged by then)
cut from FILE (default: a held-out cry from ../shared/data, repeated as needed), it prints the median time of
drawing the PNG at ``cry_end`` (the budget is 50 ms on one core: pin the process with ``taskset -c 0``), the PNG's
size, and the cost of the spectrum computed as the audio arrives, in 0.1 s chunks as live, per second of audio.
Timing belongs here, never in a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor import SAMPLE_RATE  # noqa: E402
from monitor.audio.files import read_file  # noqa: E402
from monitor.core.pipeline import WindowScore  # noqa: E402
from monitor.service.picture import Spectrum, render  # noqa: E402

DEFAULT = (ROOT.parent / "shared" / "data" / "cry" / "donateacry" / "cleaned" / "hungry"
           / "02c3b725-26e4-4a2c-9336-04ddc58836d9-1430726196216-1.7-m-04-hu.flac")
HOP = 0.24  # the shipped detector's: one window score per hop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", default=str(DEFAULT))
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    cry = read_file(args.file)
    rng = np.random.default_rng(0)
    print(f"{'cry':>6}  {'draw at cry_end':>16}  {'PNG':>8}  {'spectrum while it goes on':>26}")
    for seconds in (10, 60, 600):
        audio = np.resize(cry, seconds * SAMPLE_RATE)
        scores = [WindowScore(t, float(rng.uniform(0.5, 1.0)), float(rng.uniform(-40, -10)), False)
                  for t in np.arange(1.0, seconds, HOP)]
        chunk = SAMPLE_RATE // 10
        spectrum = Spectrum()
        started = time.process_time()
        for begin in range(0, audio.size, chunk):
            spectrum.add(audio[begin : begin + chunk])
        feeding = (time.process_time() - started) / seconds
        draws = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            png = render(spectrum, scores, 0.0, 1.5)
            draws.append(time.perf_counter() - started)
        print(f"{seconds:>5}s  {1000 * statistics.median(draws):>13.1f} ms  {len(png) / 1000:>5.1f} kB  "
              f"{1000 * feeding:>13.2f} ms per s of audio")


if __name__ == "__main__":
    main()
