#!/usr/bin/env python3
"""Build the *nursery* validation: wideband cries of held-out babies heard across a simulated room.

    python tools/make_nursery_soundscapes.py [--seed 23] [--out cache/nursery-soundscapes] [--data ../shared/data]

Why a second real set: ``cache/real-soundscapes`` (:mod:`monitor.training.real_soundscapes`) holds Donate-a-cry's
*cleaned* cries, 8 kHz phone recordings held at the baby's mouth. A nursery microphone hears a wideband cry from
1–3 m away, through a room's reverberation; on the recordings kept aside for judging, a detector that did well on
the old set raised 28 false alarms an hour and YAMNet did better. This set is built to predict that:

- **Wideband cries of held-out babies.** The iOS raw uploads are the only 16 kHz cries we have. Only those with a
  cleaned twin in the corpus are used (same install id and time stamp): the cleaning kept them, so they hold
  crying; some raw uploads hold silence or adult talk. The babies are the ones ``split_groups`` holds out.
- **Far field.** Every sound is convolved with a room impulse response from ``pyroomacoustics``' image-source
  model: shoebox nurseries of 6–20 m² floor and 2.4–2.7 m height, RT60 0.2–0.6 s, the microphone 1–3 m from the
  crib. The cries come from the crib; every other sound (TV, pets, people, household) from its own place in the
  same room.
- **Negatives from held-out groups only**, as in the real set: whole languages, voice packs, music tracks,
  animal and household effects; noise machines are the only synthetic signals, as a nursery has them.

Scenes, levels and the 130 minutes of cry-free audio follow :mod:`monitor.training.real_soundscapes`; each
recording gets a room of its own. ``crymonitor evaluate cache/nursery-soundscapes`` reports on it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from monitor.audio.files import read_file
from monitor.offline.data import Clip, read_clips, split_groups
from monitor.training import real_soundscapes as real
from monitor.training.soundscapes import SR, trim

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SEED = 23
OTHER_PLACES = 4  # distractor positions per room


def _upload_key(clip: Clip) -> str:
    """Install id and time stamp: what a cleaned clip and the raw upload it was cut from share."""
    return "-".join(clip.path.stem.split("-")[:6]).lower()


def wideband_cries(clips: list[Clip], split: str = "val") -> list[Clip]:
    """16 kHz raw uploads of the ``split`` babies (held-out by default) that have a cleaned twin (so they hold
    crying)."""
    side = split_groups(clips)
    cleaned = {_upload_key(c) for c in clips if c.source == "donateacry-cleaned"}
    return sorted((c for c in clips if c.source == "donateacry-raw" and side[c.group] == split
                   and _upload_key(c) in cleaned and c.path.suffix == ".ogg" and _is_wideband(c)),
                  key=lambda c: str(c.path))


def _is_wideband(clip: Clip) -> bool:
    import soundfile as sf

    return sf.info(str(clip.path)).samplerate == SR


@dataclasses.dataclass(frozen=True)
class Room:
    size: tuple[float, float, float]
    rt60: float
    crib_to_mic_m: float
    crib: np.ndarray  # impulse response, crib → microphone
    others: list[np.ndarray]  # impulse responses from other places in the room

    def describe(self) -> str:
        w, d, h = self.size
        return f"{w:.1f}×{d:.1f}×{h:.1f} m, RT60 {self.rt60:.2f} s, mic {self.crib_to_mic_m:.1f} m from the crib"


def nursery_room(rng: np.random.Generator) -> Room:
    """A random shoebox nursery and its impulse responses (image-source model, absorption from Sabine's formula)."""
    import pyroomacoustics as pra

    while True:
        area, aspect = rng.uniform(6, 20), rng.uniform(1.0, 1.6)
        width, depth, height = float(np.sqrt(area * aspect)), float(np.sqrt(area / aspect)), rng.uniform(2.4, 2.7)
        rt60 = float(rng.uniform(0.2, 0.6))
        distance = float(rng.uniform(1.0, 3.0))
        crib = np.array([rng.uniform(0.4, width - 0.4), rng.uniform(0.4, depth - 0.4), rng.uniform(0.5, 0.9)])
        angle = rng.uniform(0, 2 * np.pi)
        mic = crib + [distance * np.cos(angle), distance * np.sin(angle), rng.uniform(0.3, 1.2)]
        if 0.2 < mic[0] < width - 0.2 and 0.2 < mic[1] < depth - 0.2 and mic[2] < height - 0.2:
            break
    absorption, max_order = pra.inverse_sabine(rt60, [width, depth, height])
    others = [np.array([rng.uniform(0.3, width - 0.3), rng.uniform(0.3, depth - 0.3), rng.uniform(0.2, 1.8)])
              for _ in range(OTHER_PLACES)]
    shoebox = pra.ShoeBox([width, depth, height], fs=SR, materials=pra.Material(absorption),
                          max_order=min(max_order, 30))
    for source in (crib, *others):
        shoebox.add_source(source)
    shoebox.add_microphone(mic)
    shoebox.compute_rir()
    responses = [np.asarray(r, dtype=np.float32) for r in shoebox.rir[0]]
    return Room((width, depth, height), rt60, distance, responses[0], responses[1:])


def _heard(x: np.ndarray, response: np.ndarray) -> np.ndarray:
    """``x`` as the microphone hears it from where ``response`` was measured (its length kept: the tail is cut)."""
    return fftconvolve(x, response)[: x.size].astype(np.float32)


def in_room(m: real.RealMaterials, room: Room, rng: np.random.Generator) -> real.RealMaterials:
    """Every material as heard in ``room``: cries from the crib, each other clip from a random other place, the TV
    from one place."""
    def elsewhere(x: np.ndarray) -> np.ndarray:
        return _heard(x, room.others[int(rng.integers(len(room.others)))])

    tv_place = room.others[0]
    return real.RealMaterials(
        cries=[_heard(c, room.crib) for c in m.cries],
        events={k: [elsewhere(x) for x in v] for k, v in m.events.items()},
        speech=_heard(m.speech, tv_place), music=_heard(m.music, tv_place))


def load_materials(data_dir: Path) -> real.RealMaterials:
    """The real set's held-out negatives with the wideband held-out cries in place of the cleaned ones."""
    clips = read_clips(data_dir)
    base = real.load_materials(data_dir)
    cries = [trim(x) for x in (read_file(c.path) for c in wideband_cries(clips)) if x.size >= SR // 2]
    return dataclasses.replace(base, cries=cries)


def main(argv: list[str] | None = None) -> None:
    args = real.parse_args(argv, __doc__, DEFAULT_SEED, "nursery-soundscapes")
    dry = load_materials(args.data)

    def materials_for(i: int, recording: real.Recording) -> tuple[real.RealMaterials, str]:
        rng = np.random.default_rng([args.seed, 1000 + i])  # each recording's room from a stream of its own
        room = nursery_room(rng)
        return in_room(dry, room, rng), f"; nursery {room.describe()}"

    real.write_set(args, __doc__, materials_for, {"wideband_cry_clips": len(dry.cries)})


if __name__ == "__main__":
    main()
