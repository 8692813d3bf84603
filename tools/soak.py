#!/usr/bin/env python3
"""Soak benchmark: the daemon's real path on a fast file source for many hours of mixed real audio, printing its
RSS after every hour of audio (issue 12: live memory crept by 0.85 MB/min and had not levelled off).

    python tools/soak.py [--hours 24] [--soundscapes cache/real-soundscapes] [--broker HOST:PORT]

The daemon is the real one (:class:`~monitor.service.daemon.Daemon`, default config: int8 detector, ONNX
classifier, outbox, state file, MQTT to a real mosquitto started here unless ``--broker`` is given), in this
process, fed as fast as it scores: the real soundscapes (``tools/make_real_soundscapes.py``: held-out real
recordings, a cry every few minutes) played in a loop, in 5 s blocks. Its clock, daily statistics and
diagnostics follow the wall clock, so a simulated hour is a minute or so of wall time. The audio is read block by
block, so the source itself holds nothing. Timing and memory belong here, never in a test.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor import SAMPLE_RATE  # noqa: E402
from monitor.audio.files import iter_file  # noqa: E402
from monitor.config import Config, override  # noqa: E402
from monitor.service.daemon import Daemon  # noqa: E402
from monitor.logs import configure_logging  # noqa: E402

BLOCK_SECONDS = 5.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def looped(files: list[Path], hours: float, on_hour) -> AsyncIterator[np.ndarray]:
    """The files over and over, in blocks, until ``hours`` of audio; ``on_hour(n)`` after each full hour."""
    fed, hour = 0, 0
    limit = round(hours * 3600 * SAMPLE_RATE)
    while fed < limit:
        for path in files:
            for block in iter_file(path, BLOCK_SECONDS):
                block = block[: limit - fed]
                yield block
                fed += block.size
                await asyncio.sleep(0)  # let MQTT callbacks, the watch loop and reasons run
                if fed // (3600 * SAMPLE_RATE) > hour:
                    hour += 1
                    on_hour(hour)
                if fed >= limit:
                    return


def start_broker(folder: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return broker, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--soundscapes", type=Path, default=ROOT / "cache" / "real-soundscapes")
    parser.add_argument("--broker", help="HOST:PORT of a broker to use instead of a private mosquitto")
    parser.add_argument("--model", help="a detector model instead of the default")
    args = parser.parse_args()
    files = sorted(args.soundscapes.rglob("*.flac")) + sorted(args.soundscapes.rglob("*.wav"))
    if not files:
        sys.exit(f"no audio under {args.soundscapes}: run tools/make_real_soundscapes.py first")
    with tempfile.TemporaryDirectory() as folder:
        broker = None
        if args.broker:
            host, port = args.broker.rsplit(":", 1)
        else:
            broker, port = start_broker(Path(folder))
            host = "127.0.0.1"
        config = override(Config(), "mqtt", host=host, port=int(port), device_id="soak")
        config = override(config, "state", dir=str(Path(folder) / "state"))
        if args.model:
            config = override(config, "detector", model=args.model)
        config = override(config, "logging", level="warning")
        configure_logging(config.logging)
        started = time.monotonic()
        rows: list[tuple[int, float]] = []

        def on_hour(hour: int) -> None:
            rows.append((hour, rss_mb()))
            print(f"hour {hour:3d}  wall {time.monotonic() - started:7.0f} s  RSS {rows[-1][1]:7.1f} MB  "
                  f"cries today {daemon.state.stats.cries_today:5d}  outbox {len(daemon.mqtt.publisher.outbox):3d}",
                  flush=True)

        daemon = Daemon(config, source=looped(files, args.hours, on_hour))
        print(f"{len(files)} files, {args.hours:g} h of audio; RSS after loading {rss_mb():.1f} MB", flush=True)
        try:
            asyncio.run(daemon.run())
        finally:
            if broker is not None:
                broker.terminate()
    if len(rows) >= 2:
        first, last = rows[0][1], rows[-1][1]
        print(f"RSS hour {rows[0][0]}: {first:.1f} MB, hour {rows[-1][0]}: {last:.1f} MB, "
              f"change {100 * (last - first) / first:+.1f} % (goal: within ±5 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
