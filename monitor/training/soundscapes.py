#!/usr/bin/env python3
"""Build long nursery-like validation recordings with annotated cries, from held-out material only.

    python tools/make_soundscapes.py [--seed 1] [--out cache/soundscapes] [--data ../shared/data]

Writes ``<name>.wav`` (16 kHz mono, 16-bit) + ``<name>.csv`` (``onset_s,offset_s,label``) per recording and an
``index.json`` (seed, scenes → recordings, descriptions, SNRs), in about a minute. Deterministic given the seed
(and the installed espeak-ng, whose version is recorded in the index).

Held out means: only groups that ``monitor.offline.data.split_groups`` puts in ``val`` — the split the detector was
trained with — so no baby, speaker or recording heard in training appears here. Cries are the held-out
Donate-a-cry *cleaned* clips; speech is the one held-out FSDD speaker plus espeak-ng sentences; music is the
held-out music-on-hold track plus synthetic toy melodies; household noise is the held-out recording plus
synthetic fan, mains hum and knocks. The synthetic sounds and espeak speech were never training data (training
makes its own coloured noise and hum on the fly, so the noise machines are the same *kind* of signal, not the
same audio).

Levels: the "near-silence" of a sound is its 20 ms frames more than 25 dB below its loudest frame. Cry clips are
trimmed of near-silence at both ends, so an annotation starts and ends on audible crying. A cry's *active RMS*
is the RMS over its frames that are not near-silence. SNR = 20·log10(cry active RMS / background RMS), the
background's RMS taken over the whole recording (the noise machines are stationary; TV and household are
long-term levels). Clips of one bout are joined with 0.2–1 s breaths; a bout is annotated as one cry.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]

from monitor.audio.files import read_file
from monitor.core.levels import frame_db
from monitor.offline.data import Clip, read_clips, split_groups
from monitor.training.speech import espeak

SR = 16000
FRAME = SR // 50  # 20 ms
NEAR_SILENCE_DB = 25.0
DEFAULT_SEED = 1


# ---------------------------------------------------------------- levels

def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12))


def active_db(x: np.ndarray) -> float:
    db = frame_db(x, FRAME)
    return float(10 * np.log10(np.mean(10 ** (db[db >= db.max() - NEAR_SILENCE_DB] / 10))))


def trim(x: np.ndarray) -> np.ndarray:
    """Cut leading and trailing near-silence (whole 20 ms frames)."""
    db = frame_db(x, FRAME)
    loud = np.flatnonzero(db >= db.max() - NEAR_SILENCE_DB)
    return x[loud[0] * FRAME : (loud[-1] + 1) * FRAME]


def at_db(x: np.ndarray, target_db: float, measure: Callable[[np.ndarray], float] = rms_db) -> np.ndarray:
    return (x * 10 ** ((target_db - measure(x)) / 20)).astype(np.float32)


def faded(x: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    """Raised-cosine edges, so pasted excerpts do not click."""
    n = min(int(seconds * SR), x.size // 2)
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))).astype(np.float32)
    out = x.astype(np.float32)  # a copy
    out[:n] *= ramp
    out[x.size - n :] *= ramp[::-1]
    return out


# ---------------------------------------------------------------- material

def select_clips(clips: list[Clip]) -> dict[str, list[Clip]]:
    """The held-out clips each role may use: groups the training split puts in ``val``, nothing else."""
    split = split_groups(clips)
    val = sorted((c for c in clips if split[c.group] == "val"), key=lambda c: str(c.path))
    return {
        "cries": [c for c in val if c.source == "donateacry-cleaned"],
        "digits": [c for c in val if c.source.startswith("free-spoken-digit")],
        "music": [c for c in val if "moh" in c.source],
        "noise": [c for c in val if c.source.startswith("Google Speech Commands")],
    }


@dataclass(frozen=True)
class Materials:
    cries: list[np.ndarray]  # trimmed held-out cry clips
    digits: list[np.ndarray]  # held-out FSDD speaker, one digit each
    voices: list[np.ndarray]  # espeak-ng sentences
    music: np.ndarray
    noise: np.ndarray


SUBJECTS = ["The council", "My sister", "The weather service", "Our team", "The new train line", "The doctor",
            "Everyone at work", "The museum", "Your neighbour", "The minister", "This recipe", "The band"]
PREDICATES = ["will be closed on Monday morning", "says the storm is moving east tonight",
              "scored twice in the second half", "is looking for volunteers this weekend",
              "needs another twenty minutes in the oven", "announced new prices for the winter",
              "called to ask about the garden", "has finally fixed the heating", "expects heavy rain after midnight",
              "played three songs from the old album", "will answer your questions after the break",
              "forgot the keys again, can you believe it", "recommends plenty of water and rest",
              "opens a new exhibition about the sea"]
OPENERS = ["", "Good evening.", "And now,", "In other news,", "Well,", "Honestly,", "Right, so", "Listen,"]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"]


def espeak_sentences(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Varied synthetic adult speech: random sentences, voices, speeds and pitches, at 16 kHz."""
    out = []
    for _ in range(count):
        text = f"{rng.choice(OPENERS)} {rng.choice(SUBJECTS)} {rng.choice(PREDICATES)}.".strip()
        voice = f"{rng.choice(VOICES)}+{rng.choice(VARIANTS)}"
        speed, pitch = int(rng.integers(120, 200)), int(rng.integers(25, 75))
        out.append(trim(espeak(text, voice, speed, pitch)))
    return out


def load_materials(data_dir: Path, rng: np.random.Generator) -> Materials:
    roles = select_clips(read_clips(data_dir))
    return Materials(
        cries=[trim(read_file(c.path)) for c in roles["cries"]],
        digits=[trim(read_file(c.path)) for c in roles["digits"]],
        voices=espeak_sentences(rng, 80),
        music=np.concatenate([read_file(c.path) for c in roles["music"]]),
        noise=np.concatenate([read_file(c.path) for c in roles["noise"]]),
    )


# ---------------------------------------------------------------- synthetic sounds

def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Power ∝ 1/f^exponent above 20 Hz: 0 white, 1 pink, 2 brown; unit RMS. Without the 20 Hz cut, inaudible
    drift would carry much of a long pink or brown noise's RMS and make every SNR look worse than it sounds."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    spectrum[freqs < 20] = 0
    spectrum[freqs >= 20] /= freqs[freqs >= 20] ** (exponent / 2)
    x = np.fft.irfft(spectrum, n)
    return (x / np.sqrt(np.mean(x**2))).astype(np.float32)


def hum(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mains hum (50 or 60 Hz) with odd harmonics, like a fridge or a transformer."""
    t = np.arange(n) / SR
    f0 = rng.choice([50.0, 60.0])
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3, 5, 7))
    return (x + 0.05 * coloured_noise(rng, n, 1.0)).astype(np.float32)


def knocks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Doors, cupboards, dishes: decaying low-passed noise bursts at random times."""
    x = np.zeros(n, np.float32)
    for start in rng.integers(0, max(1, n - SR // 2), size=max(1, n // SR)):
        length = int(rng.uniform(0.05, 0.4) * SR)
        burst = coloured_noise(rng, length, rng.uniform(0.5, 2.0)) * np.exp(-np.arange(length) / (0.03 * SR))
        x[start : start + length] += burst[: n - start] * rng.uniform(0.2, 1.0)
    return x


def melody(rng: np.random.Generator, n: int) -> np.ndarray:
    """A toy or lullaby: pentatonic harmonic tones with soft envelopes (tonal, like a cry, but not one)."""
    root = rng.uniform(220, 440)
    x, pos = np.zeros(n, np.float32), 0
    while pos < n:
        length = int(rng.choice([0.25, 0.5, 0.75]) * SR)
        f = root * 2 ** (rng.choice([0, 2, 4, 7, 9, 12]) / 12)
        t = np.arange(length) / SR
        tone = sum(np.sin(2 * np.pi * f * k * t) * 0.6 ** k for k in range(1, 5)) * np.exp(-3 * t)
        x[pos : pos + length] += faded(tone.astype(np.float32))[: n - pos]
        pos += length
    return x


# ---------------------------------------------------------------- composition

@dataclass
class Track:
    """A recording being built: audio plus its annotations (onset_s, offset_s, label)."""

    audio: np.ndarray
    labels: list[tuple[float, float, str]] = field(default_factory=list)

    def add(self, x: np.ndarray, at: int, label: str | None = None) -> None:
        x = x[: self.audio.size - at]
        self.audio[at : at + x.size] += x
        if label:
            self.labels.append((at / SR, (at + x.size) / SR, label))


def excerpt(rng: np.random.Generator, source: np.ndarray, n: int) -> np.ndarray:
    """``n`` samples from a random place in ``source``, looping when it is shorter."""
    start = int(rng.integers(0, source.size))
    return faded(np.resize(np.roll(source, -start), n))


def talk(rng: np.random.Generator, m: Materials, n: int) -> np.ndarray:
    """Adult speech: espeak sentences and strings of spoken digits, each at its own level, with pauses."""
    x, pos = np.zeros(n, np.float32), 0
    while pos < n:
        if m.voices and rng.random() < 0.7:
            utterance = m.voices[rng.integers(len(m.voices))]
        else:
            parts = [m.digits[i] for i in rng.integers(len(m.digits), size=rng.integers(3, 11))]
            utterance = np.concatenate([np.pad(p, (0, int(rng.uniform(0.05, 0.2) * SR))) for p in parts])
        utterance = at_db(faded(utterance), rng.uniform(-4, 4), active_db)[: n - pos]
        x[pos : pos + utterance.size] = utterance
        pos += utterance.size + int(rng.uniform(0.2, 1.2) * SR)
    return x


def tv(rng: np.random.Generator, m: Materials, track: Track, level_db: float) -> None:
    """TV or radio that never stops: blocks of talk, recorded music and toy melodies, 15–60 s each."""
    pos = 0
    while pos < track.audio.size:
        n = int(rng.uniform(15, 60) * SR)
        kind = rng.choice(["speech", "music", "melody"], p=[0.55, 0.3, 0.15])
        block = {"speech": lambda: talk(rng, m, n), "music": lambda: excerpt(rng, m.music, n),
                 "melody": lambda: melody(rng, n)}[kind]()
        track.add(at_db(faded(block), level_db + rng.uniform(-3, 3)), pos, kind)
        pos += n


def household(rng: np.random.Generator, m: Materials, track: Track, level_db: float, gap_s: float) -> None:
    """Intermittent household sounds, 3–25 s each: the held-out recording, a fan, mains hum and knocks."""
    pos = int(rng.uniform(0, gap_s) * SR)
    while pos < track.audio.size:
        n = int(rng.uniform(3, 25) * SR)
        make, label = {"recording": (lambda: excerpt(rng, m.noise, n), "noise"),
                       "fan": (lambda: coloured_noise(rng, n, 2.0), "fan"),
                       "hum": (lambda: hum(rng, n), "hum"),
                       "knocks": (lambda: knocks(rng, n), "knock")}[rng.choice(["recording", "fan", "hum", "knocks"])]
        track.add(at_db(faded(make(), 0.3), level_db + rng.uniform(-6, 4)), pos, label)
        pos += n + int(rng.uniform(1, gap_s) * SR)


def cry_bout(rng: np.random.Generator, m: Materials, clips: Iterator[int], seconds: float) -> np.ndarray:
    """The next clips joined by short breaths (levels within ±3 dB), cut to ``seconds`` and trimmed again."""
    pieces, total = [], 0
    while total < seconds * SR:
        if pieces:
            pieces.append(np.zeros(int(rng.uniform(0.2, 1.0) * SR), np.float32))
        pieces.append(at_db(faded(m.cries[next(clips)]), rng.uniform(-3, 3), active_db))
        total = sum(p.size for p in pieces)
    return faded(trim(np.concatenate(pieces)[: int(seconds * SR)]))


def add_cries(rng: np.random.Generator, m: Materials, track: Track, level_db: Callable[[], float]) -> None:
    """Cry bouts of 5–60 s (log-uniform: many short, a few long), 12–35 s apart, each at the active level
    ``level_db()`` returns. Clips are drawn without replacement, reshuffled when all are used."""
    clips = iter(np.concatenate([rng.permutation(len(m.cries)) for _ in range(20)]).tolist())
    pos = int(rng.uniform(8, 20) * SR)
    while (room := track.audio.size - pos - 10 * SR) >= 5 * SR:
        bout = cry_bout(rng, m, clips, min(np.exp(rng.uniform(np.log(5), np.log(60))), room / SR))
        track.add(at_db(bout, level_db(), active_db), pos, "cry")
        pos += bout.size + int(rng.uniform(12, 35) * SR)


def room(rng: np.random.Generator, seconds: float) -> Track:
    """A quiet room: microphone and air noise, pink, around −64 dBFS."""
    n = int(seconds * SR)
    return Track(at_db(coloured_noise(rng, n, 1.0), rng.uniform(-68, -60)))


# ---------------------------------------------------------------- the recordings

def quiet_room(rng: np.random.Generator, m: Materials, seconds: float) -> Track:
    track = room(rng, seconds)
    add_cries(rng, m, track, lambda: rng.uniform(-35, -18))
    return track


def quiet_night(rng: np.random.Generator, m: Materials, seconds: float) -> Track:
    """A quiet room where, now and then, adults talk next door or something knocks."""
    track = room(rng, seconds)
    household(rng, m, track, -50, gap_s=40)
    pos = int(rng.uniform(5, 30) * SR)
    while pos < track.audio.size:
        n = int(rng.uniform(5, 20) * SR)
        track.add(at_db(faded(talk(rng, m, n)), rng.uniform(-54, -44)), pos, "speech")
        pos += n + int(rng.uniform(30, 90) * SR)
    return track


def noise_machine(rng: np.random.Generator, m: Materials, seconds: float, exponent: float,
                  snr_db: float | None) -> Track:
    track = room(rng, seconds)
    noise_db = rng.uniform(-34, -26)
    track.add(at_db(coloured_noise(rng, track.audio.size, exponent), noise_db), 0, "noise")
    if snr_db is not None:
        add_cries(rng, m, track, lambda: noise_db + snr_db)
    return track


def white_then_pink(rng: np.random.Generator, m: Materials, seconds: float) -> Track:
    white, pink = (noise_machine(rng, m, seconds / 2, exponent, None) for exponent in (0.0, 1.0))
    half = white.audio.size / SR
    return Track(np.concatenate([white.audio, pink.audio]), [(0.0, half, "noise"), (half, 2 * half, "noise")])


def tv_radio(rng: np.random.Generator, m: Materials, seconds: float, cries: bool = True) -> Track:
    track = room(rng, seconds)
    tv(rng, m, track, -30)
    background_db = rms_db(track.audio)
    if cries:
        add_cries(rng, m, track, lambda: background_db + rng.uniform(0, 10))
    return track


def busy_house(rng: np.random.Generator, m: Materials, seconds: float, cries: bool = True) -> Track:
    track = room(rng, seconds)
    household(rng, m, track, -32, gap_s=8)
    background_db = rms_db(track.audio)
    if cries:
        add_cries(rng, m, track, lambda: background_db + rng.uniform(0, 10))
    return track


@dataclass(frozen=True)
class Recording:
    name: str
    scene: str
    seconds: float
    description: str
    build: Callable[..., Track]  # (rng, materials, seconds) → Track


SCENES = {
    "quiet": "a quiet room at night with cry bouts",
    "noise_machine": "a white or pink noise machine running all night, cries at 0, +5 and +10 dB SNR",
    "tv_radio": "TV or radio playing in the room (talk, music), cries over it",
    "household": "household sounds (fan, hum, knocks, exercise bike), cries over them",
    "negatives": "no cry at all: every detection is a false alarm",
}

RECORDINGS = [
    Recording("quiet_room", "quiet", 360, "quiet room, cry bouts at −35…−18 dBFS active level", quiet_room),
    *(Recording(f"{colour}_noise_{snr}db", "noise_machine", 360,
                f"{colour} noise machine at −34…−26 dBFS, cries at {snr:+d} dB SNR",
                partial(noise_machine, exponent=exponent, snr_db=snr))
      for colour, exponent in (("white", 0.0), ("pink", 1.0)) for snr in (0, 5, 10)),
    Recording("tv_radio", "tv_radio", 360, "TV/radio (speech, music, toy melodies) at −30 dBFS, cries at 0…+10 dB "
              "SNR", tv_radio),
    Recording("household", "household", 360, "household noise (fan, hum, knocks, exercise bike), cries at 0…+10 dB "
              "SNR", busy_house),
    Recording("negatives_tv", "negatives", 360, "TV/radio only, no cries", partial(tv_radio, cries=False)),
    Recording("negatives_household", "negatives", 300, "household noise only, no cries",
              partial(busy_house, cries=False)),
    Recording("negatives_quiet", "negatives", 300, "quiet room with distant talk and knocks, no cries",
              quiet_night),
    Recording("negatives_noise_machine", "negatives", 240, "white then pink noise machine, no cries",
              white_then_pink),
]


def build(recording: Recording, materials: Materials, seed: int, index: int) -> Track:
    """One recording, from its own random stream (so recordings do not depend on each other)."""
    track = recording.build(np.random.default_rng([seed, index]), materials, recording.seconds)
    peak = float(np.abs(track.audio).max())
    if peak > 0.99:  # scale the whole recording: SNRs and annotations stay as built
        track.audio *= 0.99 / peak
    return track


def write(out: Path, recording: Recording, track: Track) -> dict:
    sf.write(out / f"{recording.name}.wav", track.audio, SR, subtype="PCM_16")
    rows = sorted(track.labels)
    (out / f"{recording.name}.csv").write_text("onset_s,offset_s,label\n" + "".join(
        f"{on:.3f},{off:.3f},{label}\n" for on, off, label in rows))
    cries = [(on, off) for on, off, label in rows if label == "cry"]
    return {"audio": f"{recording.name}.wav", "annotations": f"{recording.name}.csv", "scene": recording.scene,
            "description": recording.description, "duration_s": track.audio.size / SR, "cries": len(cries),
            "cry_seconds": round(sum(off - on for on, off in cries), 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=ROOT / "cache" / "soundscapes")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    materials = load_materials(args.data, np.random.default_rng([args.seed, len(RECORDINGS)]))
    files = {}
    for i, recording in enumerate(RECORDINGS):
        files[recording.name] = write(args.out, recording, build(recording, materials, args.seed, i))
        print(f"{recording.name}: {files[recording.name]['cries']} cries, {recording.seconds / 60:.1f} min")
    scenes = {scene: {"description": text, "files": [r.name for r in RECORDINGS if r.scene == scene]}
              for scene, text in SCENES.items()}
    espeak_version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    negatives = sum(f["duration_s"] for f in files.values() if f["scene"] == "negatives") / 60
    about = __doc__.split("\n\n", 3)[3].strip()  # the "held out" and "levels" paragraphs
    (args.out / "index.json").write_text(json.dumps(
        {"seed": args.seed, "sample_rate": SR, "espeak_ng": espeak_version, "negatives_minutes": negatives,
         "description": about, "scenes": scenes, "files": files}, indent=2) + "\n")
    print(f"wrote {len(files)} recordings ({negatives:.0f} min negatives only) to {args.out}")


if __name__ == "__main__":
    main()
