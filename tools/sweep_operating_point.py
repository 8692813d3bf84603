#!/usr/bin/env python3
"""Sweep the event state machine's operating point on the held-out validation streams.

    python tools/sweep_operating_point.py      # writes models/detector-operating-point.md

The detector scores each held-out stream once (non-cry groups played end to end; each held-out cry clip between
2 s and 6 s of a quiet room, as in tools/train_detector.py); the state machine is then replayed for every
(start threshold, N of M) candidate. The default config takes the loosest point with no false start on the
held-out negatives. Those are the same held-out groups the numbers are reported on, so the chosen point's
figures are optimistic: tools/make_soundscapes.py + `crymonitor evaluate` give a second look.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import train_detector as T  # noqa: E402

from monitor.config import Config, EventsConfig  # noqa: E402
from monitor.detect import CryDetector  # noqa: E402
from monitor.events import CryStateMachine  # noqa: E402
from monitor.pipeline import Pipeline  # noqa: E402

THRESHOLDS = (0.6, 0.7, 0.8, 0.85, 0.9)
N_OF_M = ((3, 4), (4, 4), (4, 5), (5, 6), (6, 8))


def main() -> None:
    torch.set_num_threads(2)
    cache = T.ROOT / "cache" / "detector"
    audio = np.load(cache / "audio.npy", mmap_mode="r")
    clips = json.loads((cache / "clips.json").read_text())
    config = Config()
    detector = CryDetector(config.detector)

    def scores(x: np.ndarray) -> list[tuple[float, float]]:
        return [(s.t, s.score) for s in Pipeline(config, detector).feed(x).scores]

    negative_streams, cry_streams = T.held_out_streams(audio, clips)
    negatives = {group: scores(stream) for group, _, stream in negative_streams}
    cries = [(onset, scores(stream)) for _, onset, stream in cry_streams]

    def starts(events: EventsConfig, stream: list[tuple[float, float]]) -> list[float]:
        machine = CryStateMachine(events)
        return [t for t, s in stream for e in machine.update(t, s) if e.type == "cry_start"]

    rows = ["| start threshold | N of M | false starts on held-out negatives | cries detected | latency median (s) | p95 (s) |",
            "|---|---|---|---|---|---|"]
    for threshold, (n, m) in itertools.product(THRESHOLDS, N_OF_M):
        events = dataclasses.replace(config.events, start_threshold=threshold, confirm_windows=n, of_windows=m,
                                     end_threshold=min(config.events.end_threshold, threshold))
        false = sum(len(starts(events, s)) for s in negatives.values())
        latencies = [found[0] - onset for onset, s in cries if (found := starts(events, s))]
        rows.append(f"| {threshold} | {n} of {m} | {false} | {len(latencies)}/{len(cries)} | "
                    f"{np.median(latencies):.2f} | {np.percentile(latencies, 95):.2f} |")
        print(rows[-1], flush=True)
    minutes = sum(len(s) for s in negatives.values()) * config.detector.hop_seconds / 60
    text = (f"# Operating-point sweep (models/detector.pt {detector.model_id})\n\nWritten by "
            f"`python tools/sweep_operating_point.py`. Held-out negatives: {', '.join(negatives)} "
            f"({minutes:.1f} min end to end); {len(cries)} held-out cry clips.\n\n" + "\n".join(rows) + "\n")
    (T.ROOT / "models" / "detector-operating-point.md").write_text(text)


if __name__ == "__main__":
    main()
