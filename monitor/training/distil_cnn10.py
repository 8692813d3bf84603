#!/usr/bin/env python3
"""The design's streaming CNN10, taught by the fine-tuned YAMNet (issue 20's candidate (c)).

    python tools/distil_cnn10.py [--steps 600] [--out models/detector-distilled.pt]

It starts from the CNN10 that shipped before YAMNet (``models/detector.pt``, already trained on our cries). It
then learns from the example generator of :mod:`monitor.training.yamnet_finetune`: training groups only, rooms
from pyroomacoustics, pitch shift, random band. The target for each example is half the teacher's probability and
half the label: YAMNet's view of the world and the cries we know, in one stage.

The student keeps CNN10's streaming form, which costs a fraction of YAMNet per second of audio. Whether it keeps
YAMNet's judgement is what ``tools/compare_detectors.py --detector "CNN10 taught by YAMNet=…"`` measures.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from monitor.inference.weights import MODELS_DIR, load_model, write_manifest_entry
from monitor.training.yamnet_finetune import examples, training_material

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--student", type=Path, default=MODELS_DIR / "detector.pt")
    parser.add_argument("--teacher", type=Path, default=MODELS_DIR / "detector-yamnet-lwf.pt")
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "detector-distilled.pt")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--teacher-weight", type=float, default=0.5, help="share of the teacher in the target")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    random.seed(args.seed)  # audiomentations draws its choices from Python's random module, not numpy's
    torch.set_num_threads(2)
    material = training_material(args.data, rooms=40)
    student, entry = load_model(args.student)
    teacher, _ = load_model(args.teacher)
    rng = np.random.default_rng(args.seed)
    opt = torch.optim.Adam(student.parameters(), lr=args.lr)
    started, losses = time.time(), []
    for step in range(1, args.steps + 1):
        x, y = examples(rng, args.batch, material)
        x = torch.from_numpy(x)
        with torch.no_grad():
            taught = torch.sigmoid(teacher(x))
        target = args.teacher_weight * taught + (1 - args.teacher_weight) * torch.from_numpy(y)
        student.train()
        loss = F.binary_cross_entropy_with_logits(student(x), target)  # the window ending at the last sample
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"step {step}/{args.steps}: loss {np.mean(losses[-50:]):.4f}, {time.time() - started:.0f} s", flush=True)
    student.eval()
    torch.save(student.state_dict(), args.out)
    digest = write_manifest_entry(args.out.parent, args.out.name, entry.arch, entry.kwargs)
    print(f"wrote {args.out} (sha256 {digest[:12]}…)")


if __name__ == "__main__":
    main()
