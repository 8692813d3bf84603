#!/usr/bin/env python3
"""Build the *headline* validation: long nursery recordings made only of real, held-out recordings.

    python tools/make_real_soundscapes.py [--seed 11] [--out cache/real-soundscapes] [--data ../shared/data]

Every sound here is a real recording from a group that ``monitor.offline.data.split_groups`` holds out of training:
whole languages (Tux Paint speech), a whole FSDD speaker, whole voice packs (shouts, adult laughs, coughs,
"ow"), whole music tracks, animal and household effects, and the held-out babies' cries. Nothing is
synthesised except the two things a nursery really has that are synthetic signals anyway: the room's noise
floor and white/pink noise machines. Distractors are annotated with their category (``speech``, ``vocal``,
``music``, ``animal``, ``household``, ``noise``), so ``crymonitor evaluate`` reports false alarms per hour per
category of the sound under each false alarm.

The held-out material is about 53 minutes; the negatives-only recordings reuse it with other gains, offsets,
orders and backgrounds to make 2 h 10 min of cry-free audio, so a rate of 1 false alarm per hour is measured
on more than two alarms' worth of audio. The synthetic scenes of ``tools/make_soundscapes.py`` stay as a
secondary report.

Levels follow ``tools/make_soundscapes.py`` (active RMS, SNR against the background's RMS over the whole
recording). Events (one real clip, or up to 8 s of a long one) are placed at −42…−18 dBFS active level, the
range of a cry at the same microphone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

from monitor.audio.files import read_file
from monitor.offline.data import Clip, category, read_clips, split_groups
from monitor.training.soundscapes import (
    SR,
    Recording,
    Track,
    active_db,
    add_cries,
    at_db,
    build,
    coloured_noise,
    excerpt,
    faded,
    rms_db,
    room,
    trim,
    write,
)

DEFAULT_SEED = 11
EVENT_CATEGORIES = ("vocal", "animal", "household", "speech")
MAX_EVENT_S = 8.0


@dataclass(frozen=True)
class RealMaterials:
    cries: list[np.ndarray]  # trimmed held-out cry clips (the name add_cries expects)
    events: dict[str, list[np.ndarray]]  # category → trimmed held-out clips
    speech: np.ndarray  # held-out speech, concatenated (TV talk)
    music: np.ndarray  # held-out music, concatenated


def select_clips(clips: list[Clip]) -> dict[str, list[Clip]]:
    """The held-out clips by category: groups the training split puts in ``val``, nothing else (raw cry uploads
    are left out: some hold no crying)."""
    split = split_groups(clips)
    chosen: dict[str, list[Clip]] = {}
    for clip in sorted(clips, key=lambda c: str(c.path)):
        if split[clip.group] == "val" and clip.source != "donateacry-raw":
            chosen.setdefault(category(clip), []).append(clip)
    return chosen


def load_materials(data_dir: Path) -> RealMaterials:
    by_category: dict[str, list[np.ndarray]] = {}
    for kind, chosen in select_clips(read_clips(data_dir)).items():
        audio = (read_file(c.path) for c in chosen)
        by_category[kind] = [trim(x) for x in audio if x.size >= SR // 10 and np.any(x)]
    return RealMaterials(
        cries=by_category["cry"],
        events={k: by_category[k] for k in EVENT_CATEGORIES},
        speech=np.concatenate(by_category["speech"]),
        music=np.concatenate(by_category["music"]),
    )


def events(rng: np.random.Generator, m: RealMaterials, track: Track, gap_s: tuple[float, float],
           level_db: tuple[float, float] = (-42, -18)) -> None:
    """Isolated real events, categories equally likely, ``gap_s`` apart, each labelled with its category."""
    pos = int(rng.uniform(*gap_s) * SR)
    while pos < track.audio.size:
        kind = EVENT_CATEGORIES[int(rng.integers(len(EVENT_CATEGORIES)))]
        clip = m.events[kind][int(rng.integers(len(m.events[kind])))]
        if clip.size > MAX_EVENT_S * SR:
            clip = excerpt(rng, clip, int(rng.uniform(2, MAX_EVENT_S) * SR))
        track.add(at_db(faded(clip), rng.uniform(*level_db), active_db), pos, kind)
        pos += clip.size + int(rng.uniform(*gap_s) * SR)


def tv(rng: np.random.Generator, m: RealMaterials, track: Track, level_db: float) -> None:
    """A TV or radio that never stops: blocks of real speech and real music, 15–60 s each."""
    pos = 0
    while pos < track.audio.size:
        n = int(rng.uniform(15, 60) * SR)
        kind = "speech" if rng.random() < 0.6 else "music"
        block = excerpt(rng, m.speech if kind == "speech" else m.music, n)
        track.add(at_db(faded(block), level_db + rng.uniform(-3, 3)), pos, kind)
        pos += n


def machine(rng: np.random.Generator, track: Track, exponent: float) -> float:
    """A white (0) or pink (1) noise machine at −34…−26 dBFS over the whole recording; returns its level."""
    level = rng.uniform(-34, -26)
    track.add(at_db(coloured_noise(rng, track.audio.size, exponent), level), 0, "noise")
    return level


def quiet_events(rng: np.random.Generator, m: RealMaterials, seconds: float, cries: bool) -> Track:
    track = room(rng, seconds)
    events(rng, m, track, gap_s=(4, 20))
    if cries:
        add_cries(rng, m, track, lambda: rng.uniform(-35, -18))
    return track


def noise_machine(rng: np.random.Generator, m: RealMaterials, seconds: float, exponent: float,
                  snr_db: float | None) -> Track:
    track = room(rng, seconds)
    level = machine(rng, track, exponent)
    events(rng, m, track, gap_s=(10, 40), level_db=(level - 5, level + 10))
    if snr_db is not None:
        add_cries(rng, m, track, lambda: level + snr_db)
    return track


def tv_radio(rng: np.random.Generator, m: RealMaterials, seconds: float, cries: bool) -> Track:
    track = room(rng, seconds)
    tv(rng, m, track, rng.uniform(-34, -26))
    background = rms_db(track.audio)
    if cries:
        add_cries(rng, m, track, lambda: background + rng.uniform(0, 10))
    return track


SCENES = {
    "quiet_events": "a quiet room where real sounds happen now and then (shouts, laughs, coughs, animals, "
                    "household effects, speech), with cry bouts",
    "noise_machine": "a white or pink noise machine, real sounds now and then, cries at 0, +5 and +10 dB SNR",
    "tv_radio": "a TV or radio playing real speech and music, cries at 0…+10 dB SNR over it",
    "negatives": "no cry at all (130 min at scale 1): every detection is a false alarm",
}

RECORDINGS = [
    Recording("quiet_events", "quiet_events", 600, "quiet room, real events every 4–20 s, cries −35…−18 dBFS",
              partial(quiet_events, cries=True)),
    *(Recording(f"{colour}_noise_{snr}db", "noise_machine", 480,
                f"{colour} noise machine −34…−26 dBFS, real events, cries at {snr:+d} dB SNR",
                partial(noise_machine, exponent=exponent, snr_db=snr))
      for colour, exponent, snr in (("white", 0.0, 0), ("white", 0.0, 5), ("pink", 1.0, 0), ("pink", 1.0, 10))),
    Recording("tv_radio", "tv_radio", 600, "real TV speech and music at −34…−26 dBFS, cries 0…+10 dB SNR",
              partial(tv_radio, cries=True)),
    Recording("negatives_quiet_events_a", "negatives", 1800, "quiet room, real events every 4–20 s, no cries",
              partial(quiet_events, cries=False)),
    Recording("negatives_quiet_events_b", "negatives", 1800, "as _a, other gains, order and offsets",
              partial(quiet_events, cries=False)),
    Recording("negatives_tv", "negatives", 1800, "real TV speech and music, no cries",
              partial(tv_radio, cries=False)),
    Recording("negatives_noise_machine", "negatives", 1200, "white noise machine with real events, no cries",
              partial(noise_machine, exponent=0.0, snr_db=None)),
    Recording("negatives_pink_machine", "negatives", 1200, "pink noise machine with real events, no cries",
              partial(noise_machine, exponent=1.0, snr_db=None)),
]


def parse_args(argv: list[str] | None, doc: str, seed: int, out: str) -> argparse.Namespace:
    """The command line both real-recording builders share (this one and the nursery set's)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--out", type=Path, default=ROOT / "cache" / out)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--scale", type=float, default=1.0, help="every recording's length × this (default 1)")
    return parser.parse_args(argv)


def write_set(args: argparse.Namespace, doc: str, materials_for, about: dict) -> None:
    """Build and write every recording of :data:`RECORDINGS` and the set's ``index.json``. ``materials_for(i,
    recording)`` gives that recording's materials and a note for its description; ``about`` goes in the index."""
    args.out.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, recording in enumerate(RECORDINGS):
        materials, note = materials_for(i, recording)
        recording = dataclasses.replace(recording, seconds=recording.seconds * args.scale,
                                        description=recording.description + note)
        files[recording.name] = write(args.out, recording, build(recording, materials, args.seed, i))
        print(f"{recording.name}: {files[recording.name]['cries']} cries, {recording.seconds / 60:.1f} min{note}",
              flush=True)
    scenes = {scene: {"description": text, "files": [r.name for r in RECORDINGS if r.scene == scene]}
              for scene, text in SCENES.items()}
    negatives = sum(f["duration_s"] for f in files.values() if f["scene"] == "negatives") / 60
    (args.out / "index.json").write_text(json.dumps(
        {"seed": args.seed, "scale": args.scale, "sample_rate": SR, "negatives_minutes": negatives, **about,
         "description": doc.split("\n\n", 2)[2].strip(), "scenes": scenes, "files": files}, indent=2) + "\n")
    print(f"wrote {len(files)} recordings ({negatives:.0f} min negatives only) to {args.out}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, __doc__, DEFAULT_SEED, "real-soundscapes")
    materials = load_materials(args.data)
    minutes = {k: round(sum(x.size for x in v) / SR / 60, 1) for k, v in materials.events.items()}
    write_set(args, __doc__, lambda i, recording: (materials, ""), {"held_out_event_minutes": minutes})


if __name__ == "__main__":
    main()
