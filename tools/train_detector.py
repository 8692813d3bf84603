#!/usr/bin/env python3
"""Train the CNN10 cry detector from scratch on ../shared/data and ship it to models/.

    python tools/train_detector.py            # cache audio, train, evaluate, write models/detector.{pt,md}

Recipe (decisions and reasons are in models/detector.md):
- Split by ``group`` (monitor.data.split_groups): no baby, speaker or recording is on both sides.
- Positives: 1 s crops of Donate-a-cry *cleaned* cries (raw uploads are skipped: many hold no crying), taken
  where the clip is active, mixed over a background at a random SNR in [-5, 30] dB.
- Negatives: crops of speech, music and household noise, synthetic coloured noise and mains hum, alone or mixed.
- Every window gets a random level (-50…-12 dBFS), a random spectral tilt and, with p = 0.6, a random low-pass
  (2.5–7.5 kHz), so bandwidth and microphone colour carry no label (every cry here is 8 kHz audio).
- SpecAugment sized for 1 s (2 time stripes ≤ 10 frames, 2 mel stripes ≤ 8 bins); Adam (amsgrad) 1e-3 with
  cosine decay; BCE on one logit; batch 32; best checkpoint by window F1 on validation set A, reported on
  validation set B (different crops and mixtures of the same held-out groups).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor import SAMPLE_RATE  # noqa: E402
from monitor.audio import read_file  # noqa: E402
from monitor.data import read_manifest, split_groups  # noqa: E402
from monitor.models import build  # noqa: E402
from monitor.weights import MODELS_DIR, write_manifest_entry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WIN = SAMPLE_RATE  # 1 s windows
ACTIVE_HOP = 800  # 50 ms activity frames


def build_cache(data_dir: Path, cache: Path) -> None:
    """Decode every used clip once to 16 kHz float16, concatenated, with offsets and per-clip metadata."""
    clips = read_manifest(data_dir)
    split = split_groups(clips)
    used = [c for c in clips if c.label == "notcry" or c.source == "donateacry-cleaned"]
    arrays, meta, offset = [], [], 0
    for i, clip in enumerate(used):
        audio = read_file(clip.path)
        arrays.append(audio.astype(np.float16))
        meta.append({"path": str(clip.path.relative_to(data_dir)), "label": clip.label, "group": clip.group,
                     "source": clip.source, "split": split[clip.group], "offset": offset, "length": audio.size})
        offset += audio.size
        if i % 500 == 0:
            print(f"cache {i}/{len(used)}", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / "audio.npy", np.concatenate(arrays))
    (cache / "clips.json").write_text(json.dumps(meta))


def frame_db(x: np.ndarray) -> np.ndarray:
    n = x.size // ACTIVE_HOP
    frames = x[: n * ACTIVE_HOP].astype(np.float32).reshape(n, ACTIVE_HOP)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


class Pool:
    """Clips of one split and label, with the crop starts where a 1 s window is worth taking."""

    def __init__(self, audio: np.ndarray, clips: list[dict], cry: bool) -> None:
        self.segments: list[np.ndarray] = []
        self.starts: list[np.ndarray] = []
        for c in clips:
            x = audio[c["offset"] : c["offset"] + c["length"]]
            if x.size < WIN:
                x = np.pad(x, (0, WIN - x.size))
            db = frame_db(x)
            per_win = WIN // ACTIVE_HOP
            n_starts = db.size - per_win + 1
            if n_starts <= 0:
                continue
            if cry:  # a positive crop must hold crying, not the inhale pause between bouts
                active = (db > db.max() - 20) & (db > -55)
                frac = np.convolve(active, np.ones(per_win), "valid") / per_win
                ok = np.flatnonzero(frac >= 0.3)
            else:
                ok = np.arange(n_starts)
            if ok.size:
                self.segments.append(x)
                self.starts.append(ok * ACTIVE_HOP)
        self.weights = np.array([s.size for s in self.starts], dtype=np.float64) ** 0.5
        self.weights /= self.weights.sum()  # sqrt-length: long music tracks do not drown short speech

    def crop(self, rng: np.random.Generator) -> np.ndarray:
        i = rng.choice(len(self.segments), p=self.weights)
        start = int(rng.choice(self.starts[i])) + int(rng.integers(0, ACTIVE_HOP))
        window = self.segments[i][start : start + WIN].astype(np.float32)
        return np.pad(window, (0, WIN - window.size))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2) + 1e-12))


def coloured_noise(rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(WIN))
    freqs = np.fft.rfftfreq(WIN, 1 / SAMPLE_RATE)
    exponent = rng.choice([0.0, 0.5, 1.0])  # white, pink, brown (power ∝ f^-2·exponent)
    spectrum /= np.maximum(freqs, 20.0) ** exponent
    return np.fft.irfft(spectrum, WIN).astype(np.float32)


def hum(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(WIN) / SAMPLE_RATE
    base = rng.choice([50.0, 60.0])
    return sum(rng.uniform(0.1, 1) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3))
               for k in range(1, 8)).astype(np.float32)


def colour(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random tilt EQ and, with p = 0.6, a random low-pass: bandwidth and mic colour must carry no label."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    spectrum *= (np.maximum(freqs, 100.0) / 1000.0) ** rng.uniform(-0.4, 0.4)
    if rng.random() < 0.6:
        cutoff = rng.uniform(2500, 7500)
        spectrum *= 1.0 / (1.0 + (freqs / cutoff) ** 16)
    return np.fft.irfft(spectrum, x.size).astype(np.float32)


def background(rng: np.random.Generator, negatives: Pool) -> np.ndarray:
    kind = rng.random()
    if kind < 0.5:
        return negatives.crop(rng)
    if kind < 0.7:
        return negatives.crop(rng) + coloured_noise(rng) * rng.uniform(0.05, 1.0) * 0.05
    if kind < 0.85:
        return coloured_noise(rng)
    if kind < 0.92:
        return hum(rng) + 0.1 * coloured_noise(rng)
    return coloured_noise(rng) * 1e-3  # a quiet room


def make_example(rng: np.random.Generator, cries: Pool, negatives: Pool, positive: bool) -> np.ndarray:
    bg = background(rng, negatives)
    if positive:
        cry = cries.crop(rng)
        snr = rng.uniform(-5, 30)
        bg = bg * (rms(cry) / (rms(bg) * 10 ** (snr / 20)))
        bg = cry + bg
    x = colour(bg, rng)
    x *= 10 ** (rng.uniform(-50, -12) / 20) / rms(x)
    return np.clip(x, -1, 1)


def make_batch(rng, cries, negatives, n):
    labels = rng.random(n) < 0.5
    x = np.stack([make_example(rng, cries, negatives, bool(y)) for y in labels])
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.float32))


def spec_augment(x: torch.Tensor) -> torch.Tensor:
    """Zero 2 time stripes (≤ 10 frames) and 2 mel stripes (≤ 8 bins) per example; x is (B, 1, T, mels)."""
    b, _, t, m = x.shape
    mask = torch.ones(b, 1, t, m)
    for size, width, dim in ((t, 10, 2), (m, 8, 3)):
        for _ in range(2):
            w = torch.randint(0, width, (b,))
            s = (torch.rand(b) * (size - w)).long()
            idx = torch.arange(size)
            stripe = (idx[None] >= s[:, None]) & (idx[None] < (s + w)[:, None])  # (B, size)
            shape = (b, 1, size, 1) if dim == 2 else (b, 1, 1, size)
            mask = mask * (~stripe).float().view(shape)
    return x * mask


@torch.no_grad()
def scores(model, x: torch.Tensor) -> np.ndarray:
    model.eval()
    return torch.cat([torch.sigmoid(model(x[i : i + 128])) for i in range(0, len(x), 128)]).numpy()


def f1_at(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    pred = probs >= threshold
    tp = float(np.sum(pred & (labels > 0.5)))
    fp = float(np.sum(pred & (labels < 0.5)))
    fn = float(np.sum(~pred & (labels > 0.5)))
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    return {"threshold": threshold, "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / max(precision + recall, 1e-9)}


def train(args) -> None:
    cache = ROOT / "cache" / "detector"
    if not (cache / "audio.npy").exists():
        build_cache(args.data, cache)
    audio = np.load(cache / "audio.npy", mmap_mode="r")
    clips = json.loads((cache / "clips.json").read_text())
    pools = {(split, label): Pool(audio, [c for c in clips if c["split"] == split and c["label"] == label],
                                  cry=label == "cry")
             for split in ("train", "val") for label in ("cry", "notcry")}
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    val_a = make_batch(np.random.default_rng(1001), pools["val", "cry"], pools["val", "notcry"], args.val_windows)
    model = build("cnn10")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    rng = np.random.default_rng(args.seed)
    best, history, started = -1.0, [], time.time()
    for step in range(1, args.steps + 1):
        model.train()
        x, y = make_batch(rng, pools["train", "cry"], pools["train", "notcry"], args.batch)
        logits = model.forward_logmel(model.frontend(x), augment=spec_augment)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0:
            print(f"step {step} loss {loss.item():.4f} {time.time() - started:.0f}s", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            metrics = f1_at(scores(model, val_a[0]), val_a[1].numpy(), 0.5)
            history.append({"step": step, **metrics})
            print(f"val A step {step}: {metrics}", flush=True)
            if metrics["f1"] > best:
                best = metrics["f1"]
                torch.save(model.state_dict(), args.out)
    minutes = (time.time() - started) / 60
    write_manifest_entry(args.out.parent, args.out.name, "cnn10", {})
    (cache / "train_log.json").write_text(json.dumps({"history": history, "minutes": minutes,
                                                      "steps": args.steps, "batch": args.batch}, indent=1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "detector.pt")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--val-windows", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-only", action="store_true", help="skip training; evaluate the shipped model")
    args = parser.parse_args(argv)
    if not args.eval_only:
        train(args)


if __name__ == "__main__":
    main()
