"""What the detector learns is not a cry: real non-cry clips sampled by category (:class:`Negatives`), espeak-ng
babble, laugh-like sounds, tonal music, coloured noise, hum and clicks, and the backgrounds mixed from them
(:func:`background`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monitor import SAMPLE_RATE
from monitor.training.material import CACHE, WIN, Pool, rms
from monitor.training.soundscapes import coloured_noise, hum
from monitor.training.speech import espeak


# Training babble: languages and voice variants that the validation soundscapes (English voices, m1–m7/f1–f5) never use
ESPEAK_LANGUAGES = ["de", "fr", "es", "it", "nl", "pt", "pl", "sv", "cs", "ro", "hu", "tr", "id", "fi"]
ESPEAK_VARIANTS = ["klatt", "klatt2", "klatt3", "klatt4", "Andy", "Annie", "grandma", "grandpa", "anika", "belinda",
                   "boris", "david", "linda", "max", "paul", "steph", "Alex", "announcer", "aunty", "norbert"]
SYLLABLES = ["ma", "to", "ri", "ken", "sa", "lo", "vi", "der", "un", "po", "tras", "mi", "ne", "gal", "so", "fe",
             "bar", "ti", "lu", "mon", "es", "ka", "dra", "ve", "in", "zo", "pel", "qui", "ha", "nor"]


def build_espeak_bank(cache: Path, count: int = 400, seed: int = 7) -> None:
    """Synthesise ``count`` pseudo-sentences (random syllables) in varied voices, speeds and pitches."""
    rng = np.random.default_rng(seed)
    arrays = []
    for _ in range(count):
        words = [''.join(rng.choice(SYLLABLES, size=int(rng.integers(1, 4)))) for _ in range(int(rng.integers(4, 14)))]
        voice = f"{rng.choice(ESPEAK_LANGUAGES)}+{rng.choice(ESPEAK_VARIANTS)}"
        speed, pitch = int(rng.integers(110, 210)), int(rng.integers(20, 90))
        arrays.append(espeak(" ".join(words) + ".", voice, speed, pitch).astype(np.float16))
    lengths = np.array([a.size for a in arrays])
    np.savez(cache / "espeak.npz", audio=np.concatenate(arrays), lengths=lengths)


def babble() -> Pool:
    """The espeak-ng babble bank as a pool of negatives (synthesised into the cache on first use)."""
    if not (CACHE / "espeak.npz").exists():
        build_espeak_bank(CACHE)
    bank = np.load(CACHE / "espeak.npz")
    return Pool.from_arrays(bank["audio"], bank["lengths"])


class Negatives:
    """Real non-cry crops with every category (speech, vocal, music, animal, household, noise) equally likely,
    whatever its share of the data, plus the ``extra`` pools (babble, laugh-like sounds), each as likely as one
    category.

    Weighted by duration, 90 minutes of game music would drown 3 minutes of animal effects; a first model trained
    that way on the old data called a held-out music track a cry for a minute on end.
    """

    def __init__(self, audio: np.ndarray, clips: list[dict], extra: tuple = ()) -> None:
        kinds: dict[str, list[dict]] = {}
        for c in clips:
            kinds.setdefault(c["category"], []).append(c)
        self.pools = [Pool(audio, members, cry=False) for _, members in sorted(kinds.items())] + list(extra)

    def crop(self, rng: np.random.Generator, n: int = WIN) -> np.ndarray:
        return self.pools[int(rng.integers(len(self.pools)))].crop(rng, n)


class Generated:
    """A pool whose crops are made on the fly by ``make(rng)`` (same ``crop`` interface as :class:`Pool`)."""

    def __init__(self, make) -> None:
        self.make = make

    def crop(self, rng: np.random.Generator, n: int = WIN) -> np.ndarray:
        return tiled(self.make, rng, n)


def tiled(make, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` samples from a generator of 1 s pieces (each piece drawn afresh)."""
    return np.concatenate([make(rng) for _ in range(-(-n // WIN))])[:n]


def laugh_rhythm(rng: np.random.Generator) -> list[tuple[int, int]]:
    """(start, length) in samples of a laugh-like burst train in 1 s: 4–7 bursts per second of 50–160 ms,
    sometimes after a pause (a laugh comes in runs of bursts, not a steady phonation)."""
    rate = rng.uniform(4, 7)
    t, bursts = rng.uniform(-0.2, 0.3), []
    while t < 1.0:
        length = rng.uniform(0.05, min(0.16, 0.8 / rate))
        if t + length > 0:
            bursts.append((int(max(t, 0) * SAMPLE_RATE), int(length * SAMPLE_RATE)))
        t += 1 / rate * rng.uniform(0.85, 1.15)
    return bursts


def burst_envelope(length: int) -> np.ndarray:
    ramp = max(1, length // 4)
    env = np.ones(length, np.float32)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[length - ramp :] = np.linspace(1, 0, ramp)
    return env


def chopped_cry(rng: np.random.Generator, cries: Pool) -> np.ndarray:
    """Laugh-like negative made of real cry audio: short voiced bursts at laugh rhythm with breathy gaps.

    A baby's laugh is the same voice and timbre as its cry, chopped into 4–7 short bursts per second; with no
    recording of a laughing baby, this teaches the model that the voice alone is not the evidence, the
    sustained phonation is.
    """
    cry = cries.crop(rng)
    out = noise(rng) * 0.02 * rms(cry)  # breath between the bursts
    for start, length in laugh_rhythm(rng):
        source = int(rng.integers(0, WIN - length))
        piece = cry[source : source + length] * burst_envelope(length) * rng.uniform(0.5, 1.0)
        out[start : start + length] += piece[: WIN - start]
    return out


def voiced_bursts(rng: np.random.Generator) -> np.ndarray:
    """Synthetic infant-like laughter or babble: harmonic bursts with f0 300–600 Hz and a rising-falling
    contour, two vowel-like formants, aspiration noise, at 4–7 bursts per second (laugh) or 2–4 syllables of
    150–300 ms (babble)."""
    t = np.arange(WIN) / SAMPLE_RATE
    out = np.zeros(WIN, np.float32)
    babble = rng.random() < 0.35
    if babble:
        bursts, pos = [], rng.uniform(0, 0.2)
        while pos < 1.0:
            length = rng.uniform(0.15, 0.3)
            bursts.append((int(pos * SAMPLE_RATE), int(length * SAMPLE_RATE)))
            pos += length + rng.uniform(0.05, 0.25)
    else:
        bursts = laugh_rhythm(rng)
    formants = rng.uniform([700, 1500], [1200, 3000])
    for start, length in bursts:
        length = min(length, WIN - start)
        if length <= 16:
            continue
        local = t[:length]
        f0 = rng.uniform(300, 600) * (1 + rng.uniform(-0.15, 0.15) * np.sin(np.pi * local / local[-1]))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        k = np.arange(1, 16)[:, None]
        amp = sum(1 / (1 + ((k * f0[None] - f) / 250.0) ** 2) for f in formants) / k
        voice = (amp * np.sin(k * phase[None])).sum(axis=0)
        voice += rng.uniform(0.05, 0.4) * np.std(voice) * rng.standard_normal(length)  # aspiration
        out[start : start + length] += (voice * burst_envelope(length)).astype(np.float32)
    return out


def synthetic_music(rng: np.random.Generator) -> np.ndarray:
    """Notes and chords on a musical scale with harmonic timbres and envelopes, plus optional drums.

    Tonal music is the nearest thing to a cry that a nursery hears (TV, radio, a mobile): steady pitches on a
    scale, shared onsets and percussion tell it apart from a cry's gliding, voiced bursts.
    """
    t = np.arange(WIN) / SAMPLE_RATE
    out = np.zeros(WIN)
    root = rng.integers(40, 70)
    scale = root + np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16])
    onset = -rng.uniform(0, 0.3)
    while onset < 1.0:
        length = rng.uniform(0.12, 0.7)
        decay = rng.uniform(1.5, 12)  # plucked/piano-like to sustained/organ-like
        brightness = rng.uniform(0.6, 2.0)
        timbre = rng.choice(["harmonic", "odd", "pure"])  # odd harmonics: square/clarinet-like; pure: toys
        span = slice(max(0, int(onset * SAMPLE_RATE)), min(WIN, int((onset + length) * SAMPLE_RATE)))
        local = t[span] - onset
        env = np.exp(-decay * local) * np.clip(local / 0.01, 0, 1)  # 10 ms attack
        for note in rng.choice(scale, size=int(rng.integers(1, 4)), replace=False):
            f0 = 440.0 * 2 ** ((note - 69) / 12)
            k = np.arange(1, int(min(12, 7000 // f0)) + 1, 2 if timbre == "odd" else 1)[:, None]
            if timbre == "pure":
                k = k[:1]
            phases = rng.uniform(0, 6.3, (k.size, 1))
            out[span] += env * (np.sin(2 * np.pi * k * f0 * local + phases) / k**brightness).sum(axis=0)
        onset += length * rng.uniform(0.6, 1.0)
    if rng.random() < 0.5:  # drums: kick (decaying 60 Hz) and hi-hat (short noise bursts)
        beat = rng.uniform(0.25, 0.6)
        for start in np.arange(rng.uniform(0, beat), 1.0, beat):
            local = np.clip(t - start, 0, None) * (t >= start)
            out += 0.8 * np.exp(-local * 25) * np.sin(2 * np.pi * 60 * local) * (t >= start)
            out += 0.2 * np.exp(-local * 80) * rng.standard_normal(WIN) * (t >= start)
    return out.astype(np.float32)


def noise(rng: np.random.Generator, n: int = WIN) -> np.ndarray:
    """White, pink or brown noise at unit RMS (:func:`~monitor.training.soundscapes.coloured_noise`, the
    project's one implementation). The shipped detector was trained with an earlier copy of its own that kept
    the drift below 20 Hz and was not normalised (its pink and brown noise 30–400 times quieter than its white at
    the same factor); a retrain uses this one, with its hum, as the synthetic soundscapes do: not measured yet."""
    return coloured_noise(rng, n, float(rng.choice([0.0, 1.0, 2.0])))


def clicks(rng: np.random.Generator) -> np.ndarray:
    """Knocks, taps and clicks: short decaying noise or resonant bursts at random times."""
    t = np.arange(WIN) / SAMPLE_RATE
    out = np.zeros(WIN)
    for start in rng.uniform(0, 1, int(rng.integers(1, 6))):
        local = np.clip(t - start, 0, None)
        burst = rng.standard_normal(WIN) if rng.random() < 0.5 else np.sin(2 * np.pi * rng.uniform(150, 3000) * local)
        out += (t >= start) * np.exp(-local * rng.uniform(30, 300)) * burst * rng.uniform(0.2, 1)
    return out.astype(np.float32)


def background(rng: np.random.Generator, negatives: Negatives | Pool, n: int = WIN) -> np.ndarray:
    kind = rng.random()
    if kind < 0.45:
        return negatives.crop(rng, n)
    if kind < 0.6:
        return negatives.crop(rng, n) + noise(rng, n) * rng.uniform(0.05, 1.0) * 0.05
    if kind < 0.72:
        music = tiled(synthetic_music, rng, n)
        return music + (negatives.crop(rng, n) * rng.uniform(0, 1) * rms(music) / max(rms(negatives.crop(rng, n)), 1e-6)
                        if rng.random() < 0.3 else 0)
    if kind < 0.85:
        return noise(rng, n)
    if kind < 0.89:
        return hum(rng, n) + 0.1 * noise(rng, n)
    if kind < 0.93:
        return tiled(clicks, rng, n) + noise(rng, n) * rng.uniform(0, 0.05)
    return noise(rng, n) * 1e-3  # a quiet room
