"""The training material of the detector (and of the YAMNet fine-tuning): every clip it uses, decoded once into a
cache, and :class:`Pool`, which cuts 1 s windows where they are worth taking, from cries and non-cries alike.

``cache/detector/`` holds the decoded clips (``audio.npy``, ``clips.json``: built on first use), the babble bank
(:func:`monitor.training.negatives.babble`) and each training run's own files (:func:`run_file`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from monitor import SAMPLE_RATE
from monitor.audio.files import read_file
from monitor.core.levels import frame_db
from monitor.offline.data import category, read_clips, split_groups

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "cache" / "detector"
ABLATIONS = CACHE / "ablations"  # variants trained with ``--ablation NAME``, for the card's laugh-negatives table
WIN = SAMPLE_RATE  # 1 s windows
ACTIVE_HOP = 800  # 50 ms activity frames


def load_cache(data_dir: Path) -> tuple[np.ndarray, list[dict]]:
    """The decoded clips (:func:`build_cache`, built on first use) as (float16 audio, memory-mapped; per-clip
    metadata)."""
    if not (CACHE / "audio.npy").exists():
        build_cache(data_dir, CACHE)
    return np.load(CACHE / "audio.npy", mmap_mode="r"), json.loads((CACHE / "clips.json").read_text())


def build_cache(data_dir: Path, cache: Path) -> None:
    """Decode every used clip once to 16 kHz float16, concatenated, with offsets and per-clip metadata."""
    clips = read_clips(data_dir)
    split = split_groups(clips)
    used = [c for c in clips if c.label == "notcry" or c.source == "donateacry-cleaned"]
    arrays, meta, offset = [], [], 0
    for i, clip in enumerate(used):
        audio = read_file(clip.path)
        arrays.append(audio.astype(np.float16))
        meta.append({"path": str(clip.path.relative_to(data_dir)), "label": clip.label, "group": clip.group,
                     "source": clip.source, "category": category(clip), "split": split[clip.group],
                     "offset": offset, "length": audio.size})
        offset += audio.size
        if i % 500 == 0:
            print(f"cache {i}/{len(used)}", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / "audio.npy", np.concatenate(arrays))
    (cache / "clips.json").write_text(json.dumps(meta))


def run_file(args, stem: str, ext: str) -> Path:
    """A run's own file in the cache (``best-detector.pt``, ``train_log-detector-small.json``, …): each output
    model, and each ablation, keeps its checkpoints, logs and measurements apart."""
    return CACHE / f"{stem}-{args.ablation or args.out.stem}.{ext}"


class Pool:
    """Clips of one split and label, with the crop starts where a 1 s window is worth taking."""

    def __init__(self, audio: np.ndarray, clips: list[dict], cry: bool) -> None:
        self.segments: list[np.ndarray] = []
        self.starts: list[np.ndarray] = []
        for c in clips:
            self._add(audio[c["offset"] : c["offset"] + c["length"]], cry)
        self.weights = np.array([s.size for s in self.starts], dtype=np.float64) ** 0.5
        self.weights /= self.weights.sum()  # sqrt-length: long music tracks do not drown short speech

    @classmethod
    def from_arrays(cls, audio: np.ndarray, lengths: np.ndarray, cry: bool = False) -> "Pool":
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return cls(audio, [{"offset": int(o), "length": int(n)} for o, n in zip(offsets, lengths)], cry=cry)

    def _add(self, x: np.ndarray, cry: bool) -> None:
        if x.size < WIN:
            x = np.pad(x, (0, WIN - x.size))
        db = frame_db(x, ACTIVE_HOP)
        per_win = WIN // ACTIVE_HOP
        n_starts = db.size - per_win + 1
        if n_starts <= 0:
            return
        if cry:  # a positive crop must hold crying, not the inhale pause between bouts
            active = (db > db.max() - 20) & (db > -55)
            frac = np.convolve(active, np.ones(per_win), "valid") / per_win
            ok = np.flatnonzero(frac >= 0.3)
        else:
            ok = np.arange(n_starts)
        if ok.size:
            self.segments.append(x)
            self.starts.append(ok * ACTIVE_HOP)

    def crop(self, rng: np.random.Generator, n: int = WIN) -> np.ndarray:
        """``n`` samples from a start where a 1 s window is worth taking (zero-padded past the clip's end)."""
        i = rng.choice(len(self.segments), p=self.weights)
        start = int(rng.choice(self.starts[i])) + int(rng.integers(0, ACTIVE_HOP))
        window = self.segments[i][start : start + n].astype(np.float32)
        return np.pad(window, (0, n - window.size))


def rms(x: np.ndarray) -> float:
    """Root mean square of ``x``, never 0 (what levels and SNRs divide by)."""
    return float(np.sqrt(np.mean(x**2) + 1e-12))
