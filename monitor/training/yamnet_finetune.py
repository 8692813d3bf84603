#!/usr/bin/env python3
"""Fine-tune YAMNet's cry output on our cries without forgetting what AudioSet taught it ("learning without
forgetting", Li & Hoiem 2016).

    python tools/finetune_yamnet.py [--examples 36000] [--epochs 2] [--lwf 3] [--out models/detector-yamnet-lwf.pt]

Why this shape: a head trained on ``../shared/data`` alone (a logistic layer on YAMNet's 521 scores) found more cries
on the recordings kept aside for judging but raised 60 false alarms an hour there. Our negatives are 4.6 hours of
speech, music, game voices and a few effects; a home has cats, sirens, bells and babies laughing, which only
AudioSet has heard. So the other 520 outputs are held to the original model's on every example (negatives and
cry mixtures alike): the shared layers may only change in ways that leave YAMNet's view of the rest of the world
where it was, while the cry output learns our cries as a nursery microphone hears them.

- **Data** (training groups only, ``split_groups``): Donate-a-cry's cleaned cries and the training babies' wideband
  iOS uploads that have a cleaned twin, mixed at −5…30 dB SNR over every category of real non-cry and the
  synthetic backgrounds of :mod:`monitor.training.negatives`, by the detector's ``make_example``
  (:mod:`monitor.training.augment`: random tilt and low-pass on both classes so bandwidth carries no label;
  30 % of cries begin inside the window). Each example is then heard through a simulated nursery
  (pyroomacoustics, rooms drawn like the validation's but from another seed) with p = 0.8, whole scene, so
  reverberation carries no label either.
- **What trains**: layers 7–14 and the dense layer (the 6×4 and 3×2 resolutions, 83 % of the weights). Layers 1–6
  stay as released; their outputs for the fixed example set are computed once and cached in memory, so an epoch
  costs only the top of the network.
- **Loss**: binary cross-entropy of the cry output against the label, plus ``--lwf`` × the binary cross-entropy of
  the other 520 outputs against the original model's probabilities.

The result is a ``yamnet-cry`` model like the imported one (``models/manifest.json``); ``tools/compare_detectors.py``
measures it beside YAMNet out of the box.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import fftconvolve

from monitor import SAMPLE_RATE
from monitor.inference.models.yamnet import CRY_CLASS, PATCH_SAMPLES, YamnetCry
from monitor.inference.weights import MODELS_DIR, load_model, write_manifest_entry
from monitor.offline.data import read_clips
from monitor.training.augment import make_example
from monitor.training.material import Pool, load_cache
from monitor.training.negatives import Negatives
from monitor.training.soundscapes import coloured_noise
from monitor.training.nursery_soundscapes import nursery_room, wideband_cries
from monitor.audio.files import read_file

ROOT = Path(__file__).resolve().parents[2]
FROZEN_BLOCKS = 5  # blocks[0:5] are layers 2-6: with conv1, the part that stays as released
TRAIN_ROOM_SEED = 777  # the validation rooms use nursery_soundscapes.DEFAULT_SEED
POSITIVE_FRACTION = 0.4  # a home is mostly not crying: negatives outnumber cries


@dataclass(frozen=True)
class Material:
    """What the example generator draws from (:func:`examples`)."""

    cries: Pool
    negatives: Negatives
    rooms: list[np.ndarray]  # impulse responses


def training_material(data: Path, rooms: int) -> Material:
    """Training groups only: the cleaned 8 kHz cries and the training babies' wideband iOS uploads, every real
    non-cry, and ``rooms`` simulated nurseries (5 impulse responses each) from :data:`TRAIN_ROOM_SEED`."""
    audio, clips = load_cache(data)
    cleaned = [audio[c["offset"] : c["offset"] + c["length"]] for c in clips
               if c["split"] == "train" and c["label"] == "cry"]
    wideband = [read_file(c.path) for c in wideband_cries(read_clips(data), split="train")]
    cries = Pool.from_arrays(np.concatenate(cleaned + wideband), np.array([x.size for x in cleaned + wideband]),
                             cry=True)
    negatives = Negatives(audio, [c for c in clips if c["split"] == "train" and c["label"] == "notcry"])
    return Material(cries, negatives, room_bank(rooms, TRAIN_ROOM_SEED))


def room_bank(rooms: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    bank = []
    for _ in range(rooms):
        room = nursery_room(rng)
        bank += [room.crib, *room.others]
    return bank


def noise_machine_example(rng: np.random.Generator, material: Material, positive: bool) -> np.ndarray:
    """A white or pink noise machine, half the time with a real non-cry sound over it, and for a positive a cry at
    −5…+10 dB SNR (its RMS against the noise's), set to −45…−20 dBFS."""
    n = PATCH_SAMPLES
    x = coloured_noise(rng, n, float(rng.choice([0.0, 1.0])))
    if rng.random() < 0.5:
        event = material.negatives.crop(rng, n)
        x = x + event * (rng.uniform(0.3, 3.0) / max(float(np.sqrt(np.mean(event**2))), 1e-6))
    if positive:
        cry = material.cries.crop(rng, n)
        x = cry + x * (np.sqrt(np.mean(cry**2)) / (np.sqrt(np.mean(x**2)) * 10 ** (rng.uniform(-5, 10) / 20)))
    return (x * 10 ** (rng.uniform(-45, -20) / 20) / max(float(np.sqrt(np.mean(x**2))), 1e-9)).astype(np.float32)


def examples(rng: np.random.Generator, count: int, material: Material,
             noise_machines: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    from audiomentations import PitchShift

    # ±3 semitones on both classes (so its artefacts carry no label): more voices and animals than we have
    shift = PitchShift(min_semitones=-3, max_semitones=3, p=0.3)
    labels = rng.random(count) < POSITIVE_FRACTION
    out = np.empty((count, PATCH_SAMPLES), dtype=np.float32)
    for i, positive in enumerate(labels):
        x = (noise_machine_example(rng, material, bool(positive)) if rng.random() < noise_machines else
             make_example(rng, material.cries, material.negatives, bool(positive), n=PATCH_SAMPLES))
        x = shift(x, sample_rate=SAMPLE_RATE)
        if rng.random() < 0.8:
            level = np.sqrt(np.mean(x**2) + 1e-12)
            x = fftconvolve(x, material.rooms[int(rng.integers(len(material.rooms)))])[:PATCH_SAMPLES]
            x *= level / np.sqrt(np.mean(x**2) + 1e-12)
        out[i] = np.clip(x, -1, 1)
    return out, labels.astype(np.float32)


@torch.no_grad()
def frozen_part(model: YamnetCry, audio: np.ndarray, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Layers 1-6 outputs (float16) and the original model's 521 logits for every example."""
    trunk, teacher = [], []
    for i in range(0, len(audio), batch):
        h = model.trunk(model.frontend(torch.from_numpy(audio[i : i + batch])), FROZEN_BLOCKS)
        trunk.append(h.half())
        teacher.append(model.top(h, FROZEN_BLOCKS))
    return torch.cat(trunk), torch.cat(teacher)


def train(args: argparse.Namespace) -> Path:
    torch.manual_seed(args.seed)
    random.seed(args.seed)  # audiomentations draws its choices from Python's random module, not numpy's
    torch.set_num_threads(args.threads)
    material = training_material(args.data, args.rooms)
    rng = np.random.default_rng(args.seed)
    started = time.time()
    x, y = examples(rng, args.examples, material, args.noise_machines)
    print(f"{args.examples} examples ({int(y.sum())} cries) in {time.time() - started:.0f} s", flush=True)
    model, _ = load_model(args.init)
    trunk, teacher = frozen_part(model, x)
    del x
    print(f"frozen layers cached: {tuple(trunk.shape)} in {time.time() - started:.0f} s", flush=True)
    others = torch.ones(teacher.shape[1], dtype=torch.bool)
    others[CRY_CLASS] = False
    soft = torch.sigmoid(teacher[:, others])
    labels = torch.from_numpy(y)
    trainable = [p for block in model.blocks[FROZEN_BLOCKS:] for p in block.parameters()] + list(model.dense.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.Adam(trainable, lr=args.lr)
    steps = args.epochs * (len(labels) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    model.train()
    step = 0
    for epoch in range(args.epochs):
        order = torch.randperm(len(labels))
        totals = np.zeros(2)
        for i in range(0, len(order) - args.batch + 1, args.batch):
            idx = order[i : i + args.batch]
            logits = model.top(trunk[idx].float(), FROZEN_BLOCKS)
            cry_loss = F.binary_cross_entropy_with_logits(logits[:, CRY_CLASS], labels[idx])
            keep_loss = F.binary_cross_entropy_with_logits(logits[:, others], soft[idx])
            keep_floor = F.binary_cross_entropy(soft[idx], soft[idx])  # the teacher's own entropy: 0 when matched
            loss = cry_loss + args.lwf * (keep_loss - keep_floor)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            totals += [cry_loss.item(), (keep_loss - keep_floor).item()]
        batches = len(order) // args.batch
        print(f"epoch {epoch + 1}/{args.epochs}: cry BCE {totals[0] / batches:.4f}, other outputs' divergence "
              f"{totals[1] / batches:.5f}, {time.time() - started:.0f} s", flush=True)
    model.eval()
    torch.save(model.state_dict(), args.out)
    digest = write_manifest_entry(args.out.parent, args.out.name, "yamnet-cry", {})
    print(f"wrote {args.out} (sha256 {digest[:12]}…)")
    return args.out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--init", type=Path, default=MODELS_DIR / "detector-yamnet.pt")
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "detector-yamnet-lwf.pt")
    parser.add_argument("--examples", type=int, default=36000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lwf", type=float, default=3.0, help="weight of holding the other 520 outputs")
    parser.add_argument("--rooms", type=int, default=40)
    parser.add_argument("--noise-machines", type=float, default=0.0,
                        help="share of examples over a white or pink noise machine at −5…+10 dB SNR")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    train(parser.parse_args(argv))


if __name__ == "__main__":
    main()
