#!/usr/bin/env python3
"""Cut an excerpt of an annotated recording, with its annotations, for ``crymonitor evaluate``.

    python tools/excerpt.py AUDIO START END OUT.wav

Writes the audio from START to END seconds as OUT.wav and, beside it, OUT.csv with the annotations that overlap
that span, clipped to it and shifted so the excerpt starts at 0. A ten-minute validation scene draws as an
unreadable timeline; a minute of it shows what the detector did there (docs/evaluation.md makes the README's
picture this way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.offline.evaluation import HEADER, read_annotations  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", type=Path, help="an audio file with its annotations AUDIO.csv beside it")
    parser.add_argument("start", type=float, help="seconds")
    parser.add_argument("end", type=float, help="seconds")
    parser.add_argument("out", type=Path, help="the excerpt's .wav (its .csv is written beside it)")
    args = parser.parse_args()
    info = sf.info(str(args.audio))
    if not 0 <= args.start < args.end <= info.duration:
        parser.error(f"need 0 <= START < END <= {info.duration:.3f} (the file's length)")
    rate = info.samplerate
    audio, _ = sf.read(str(args.audio), start=round(args.start * rate), stop=round(args.end * rate),
                       dtype="float32", always_2d=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(args.out), audio, rate, subtype=info.subtype)  # as the source: a float WAV stays float
    rows = [f"{max(a.onset_s, args.start) - args.start:.3f},{min(a.offset_s, args.end) - args.start:.3f},{a.label}"
            for a in read_annotations(args.audio.with_suffix(".csv"))
            if a.offset_s > args.start and a.onset_s < args.end]
    args.out.with_suffix(".csv").write_text("\n".join([",".join(HEADER), *rows]) + "\n")
    print(f"{args.out}: {args.end - args.start:g} s, {len(rows)} annotation(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
