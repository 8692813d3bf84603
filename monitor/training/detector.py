#!/usr/bin/env python3
"""Train the CNN10 cry detector from scratch on ../shared/data and ship it to models/.

    python tools/train_detector.py            # cache audio, train, evaluate, write models/detector.{pt,md}

Recipe (decisions and reasons are in models/detector.md):
- Split by ``group`` (monitor.offline.data.split_groups): no baby, speaker or recording is on both sides.
- Positives: 1 s crops of Donate-a-cry *cleaned* cries (raw uploads are skipped: many hold no crying), taken
  where the clip is active, mixed over a background at a random SNR in [-5, 30] dB.
- Negatives: crops of speech, music and household noise (each kind equally likely, whatever its duration),
  espeak-ng babble in non-English voices (TV-like speech the data lacks; the soundscapes use English voices, so
  evaluation speech stays unseen), synthetic coloured noise, mains hum, clicks and tonal music (notes, chords,
  drums, toy-like pure and square tones), alone or mixed.
- Positives start inside the window 30 % of the time (cry onset after 0–0.6 s of background), so the first
  windows of a cry already score high: that is what onset latency is made of.
- Every window gets a random level (-50…-12 dBFS), a random spectral tilt and, with p = 0.6, a random low-pass
  (2.5–7.5 kHz), so bandwidth and microphone colour carry no label (every cry here is 8 kHz audio).
- SpecAugment sized for 1 s (2 time stripes ≤ 10 frames, 2 mel stripes ≤ 8 bins); Adam (amsgrad) 1e-3 with
  cosine decay; BCE on one logit; batch 32; mixup (log-mel, λ ~ Beta(0.4, 0.4), half the batches); best
  checkpoint by window F1 on validation set A, reported on validation set B (different crops and mixtures of the
  same held-out groups).
- Hard-negative mining: every ``--mine-every`` steps the model scores fresh *training* negatives and the
  highest-scoring ones make a quarter of each later batch's negatives. No validation audio is ever mined.

The loop and its stages are here. The clips and the crops cut from them are in monitor/training/material.py,
the negatives in negatives.py, the examples and their augmentation in augment.py, the measurements and the card
in detector_card.py (its text: cards/detector.md).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from monitor.inference.models import build
from monitor.inference.weights import MODELS_DIR, load_model, write_manifest_entry
from monitor.offline.evaluation import Windows
from monitor.training.augment import colour, make_batch, mixup, spec_augment
from monitor.training.detector_card import card_stage, scores, window_metrics
from monitor.training.material import ABLATIONS, Pool, load_cache, rms, run_file
from monitor.training.negatives import Generated, Negatives, babble, background, chopped_cry, voiced_bursts

ROOT = Path(__file__).resolve().parents[2]
# The detector shipped by commit af0651e (issue 9's retraining on every real negative, window form; git history
# keeps it and its own recipe reproducible). The streaming form has the same layers and shapes, so it starts
# from those weights and only learns to do without the zero padding, which takes a fraction of a full training.
INIT = "af0651e:models/detector.pt"
STAGES = ("detector", "calibrate", "card")


def mine_hard_negatives(model, rng: np.random.Generator, negatives: Negatives, candidates: int, keep: int) -> list:
    """The ``keep`` highest-scoring of ``candidates`` fresh training backgrounds (before colour and gain, which
    every use re-draws)."""
    raw = [background(rng, negatives) for _ in range(candidates)]
    coloured = [colour(b, rng) for b in raw]
    x = np.stack([c * 10 ** (rng.uniform(-50, -12) / 20) / rms(c) for c in coloured])
    x = torch.from_numpy(np.clip(x, -1, 1).astype(np.float32))
    order = np.argsort(-scores(model, x))
    return [raw[i] for i in order[:keep]]


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
                      weight: float, temperature: float) -> torch.Tensor:
    """Hard labels plus the teacher's soft ones (Hinton et al.): ``(1 − weight) · BCE(z, y) + weight · T² ·
    BCE(z / T, σ(z_teacher / T))``; the T² keeps the soft term's gradient on the scale of the hard one."""
    hard = F.binary_cross_entropy_with_logits(logits, y)
    soft = F.binary_cross_entropy_with_logits(logits / temperature, torch.sigmoid(teacher_logits / temperature))
    return (1 - weight) * hard + weight * temperature**2 * soft


def pruned_from(teacher: torch.nn.Module, student: torch.nn.Module) -> dict:
    """A narrower student's starting weights cut out of its teacher (structured magnitude pruning): in each
    convolution the output channels with the largest L1 norm, the matching input channels of the next layer,
    batch-norm statistics and the head's rows and columns alike. It starts near the teacher's features instead
    of from random ones, which a CPU budget of minutes needs."""
    state, kept_in = {}, torch.arange(1)
    for t_block, s_block, name in zip(teacher.blocks, student.blocks, range(len(student.blocks))):
        for conv, norm in (("conv1", "bn1"), ("conv2", "bn2")):
            weight = getattr(t_block, conv).weight[:, kept_in]
            keep = weight.abs().sum(dim=(1, 2, 3)).argsort(descending=True)[: getattr(s_block, conv).out_channels]
            keep = keep.sort().values
            state[f"blocks.{name}.{conv}.weight"] = weight[keep]
            for key, value in getattr(t_block, norm).state_dict().items():
                state[f"blocks.{name}.{norm}.{key}"] = value if value.dim() == 0 else value[keep]
            kept_in = keep
    fc1 = teacher.fc1.weight[:, kept_in]
    rows = fc1.abs().sum(dim=1).argsort(descending=True)[: student.fc1.out_features].sort().values
    state["fc1.weight"], state["fc1.bias"] = fc1[rows], teacher.fc1.bias[rows]
    state["head.weight"], state["head.bias"] = teacher.head.weight[:, rows], teacher.head.bias.clone()
    for key, value in teacher.state_dict().items():
        if key.startswith(("frontend.", "bn0.")):
            state[key] = value
    return {k: v.detach().clone() for k, v in state.items()}


def train(args) -> None:
    audio, clips = load_cache(args.data)
    pools = {}
    for split in ("train", "val"):
        pools[split, "cry"] = Pool(audio, [c for c in clips if c["split"] == split and c["label"] == "cry"], cry=True)
    laughs = {"chopped": Generated(partial(chopped_cry, cries=pools["train", "cry"])), "voiced": Generated(voiced_bursts)}
    extra = (babble(), *(laughs[k] for k in args.laugh_negatives))
    for split in ("train", "val"):
        pools[split, "notcry"] = Negatives(audio, [c for c in clips if c["split"] == split and c["label"] == "notcry"],
                                           extra=extra if split == "train" else ())
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    val_a = make_batch(np.random.default_rng(1001), pools["val", "cry"], pools["val", "notcry"], args.val_windows)
    kwargs = {"widths": list(args.widths)} if args.widths else {}
    model = build(args.arch, **kwargs)
    teacher = load_model(args.teacher)[0] if args.teacher else None
    if args.init == "teacher":
        model.load_state_dict(pruned_from(teacher, model))
    elif args.init:
        model.load_state_dict(initial_weights(args.init))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, amsgrad=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    rng = np.random.default_rng(args.seed)
    best, history, started, hard = -1.0, [], time.time(), []
    for step in range(1, args.steps + 1):
        if args.mine_every and step % args.mine_every == 0:
            hard = mine_hard_negatives(model, rng, pools["train", "notcry"], args.mine_candidates, args.mine_keep)
            print(f"mined {len(hard)} hard negatives at step {step}", flush=True)
        model.train()
        x, y = make_batch(rng, pools["train", "cry"], pools["train", "notcry"], args.batch, hard)
        logmel = model.window_logmel(x)
        if rng.random() < 0.5:
            logmel, y = mixup(logmel, y, rng)
        logits = model.forward_logmel(logmel, augment=spec_augment)
        if teacher is None:
            loss = F.binary_cross_entropy_with_logits(logits, y)
        else:  # the teacher hears the same (mixed) window, without SpecAugment
            with torch.no_grad():
                teacher_logits = teacher.forward_logmel(logmel)
            loss = distillation_loss(logits, teacher_logits, y, args.distil_weight, args.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0:
            print(f"step {step} loss {loss.item():.4f} {time.time() - started:.0f}s", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            metrics = window_metrics(Windows(val_a[1].numpy() > 0.5, scores(model, val_a[0])), 0.5)
            history.append({"step": step, **metrics})
            print(f"val A step {step}: {metrics}", flush=True)
            if metrics["f1"] > best:
                best = metrics["f1"]
                torch.save(model.state_dict(), run_file(args, "best", "pt"))
    minutes = (time.time() - started) / 60
    # the shipped file and its manifest hash change together, so an interrupted run never leaves them apart
    shutil.copyfile(run_file(args, "best", "pt"), args.out)
    write_manifest_entry(args.out.parent, args.out.name, args.arch, kwargs)
    run_file(args, "train_log", "json").write_text(json.dumps(
        {"argv": [a for a in args.argv if a != "--stages" and a not in STAGES], "history": history,
         "minutes": minutes, "init": args.init, "arch": args.arch, "kwargs": kwargs,
         "teacher": str(args.teacher) if args.teacher else None, "distil_weight": args.distil_weight,
         "temperature": args.temperature, "laugh_negatives": args.laugh_negatives, "steps": args.steps,
         "batch": args.batch, "lr": args.lr}, indent=1))


def initial_weights(spec: str) -> dict:
    """Weights to start from: a file, or ``REV:PATH`` read from git (e.g. the previous shipped detector, which
    stays reproducible from the repository's history after the new one replaces it). A verifier head that
    af0651e's detector carried is left out: this detector has none (models/detector.md says why)."""
    if ":" in spec and not Path(spec).exists():
        blob = subprocess.run(["git", "-C", str(ROOT), "show", spec], check=True, capture_output=True).stdout
        with tempfile.NamedTemporaryFile(suffix=".pt") as handle:
            handle.write(blob)
            handle.flush()
            state = torch.load(handle.name, weights_only=True)
    else:
        state = torch.load(spec, weights_only=True)
    return {k: v for k, v in state.items() if not k.startswith("verifier.")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "detector.pt")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--val-windows", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mine-every", type=int, default=150, help="steps between hard-negative mining; 0: off")
    parser.add_argument("--mine-candidates", type=int, default=1024)
    parser.add_argument("--mine-keep", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", default=INIT,
                        help="start from these weights: a file, git REV:PATH, 'teacher' (pruned from --teacher) or '' "
                             "(from scratch)")
    parser.add_argument("--laugh-negatives", nargs="*", default=["chopped", "voiced"], choices=["chopped", "voiced"],
                        help="laugh-like negatives to add (none: only the real adult laughs)")
    parser.add_argument("--lr", type=float, default=3e-4,
                        help="peak learning rate (cosine decay); 3e-4 adapts the initial weights without undoing them")
    parser.add_argument("--widths", type=int, nargs=4, metavar="C",
                        help="the four blocks' channels (default CNN10's 64 128 256 512); a student is narrower")
    parser.add_argument("--teacher", type=Path,
                        help="distil from this shipped detector: its soft labels beside the hard ones")
    parser.add_argument("--distil-weight", type=float, default=0.5, help="share of the teacher's soft labels")
    parser.add_argument("--temperature", type=float, default=2.0, help="softens both models' logits")
    parser.add_argument("--arch", default="cnn10-stream", choices=["cnn10-stream", "cnn10"],
                        help="cnn10-stream: the streaming form the daemon runs; cnn10: the window form")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES,
                        help="detector: train the CNN10; calibrate: tools/sweep_operating_point.py; card: held-out clips and models/detector.md")
    parser.add_argument("--ablation", metavar="NAME",
                        help="train a variant (detector stage only) into cache/detector/ablations/NAME/; the card "
                             "stage measures every such variant for its laugh-negatives table")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the card names the command that made it
    if args.ablation:
        args.out = ABLATIONS / args.ablation / "detector.pt"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        train(args)
        (args.out.parent / "laugh_negatives.json").write_text(json.dumps(args.laugh_negatives))
        return
    if "detector" in args.stages:
        train(args)
    if "calibrate" in args.stages:
        from monitor.training import operating_point as sweep_operating_point

        compare = ["--compare", str(args.teacher)] if args.teacher else []  # a student beside its teacher
        run_file(args, "sweep", "json").write_text(sweep_operating_point.main(["--model", str(args.out), *compare])
                                                   .to_json())
    if "card" in args.stages:
        print(json.dumps(card_stage(args), indent=1))


if __name__ == "__main__":
    main()
