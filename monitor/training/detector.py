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

The clips and the crops cut from them are in monitor/training/material.py, the negatives in negatives.py, the
examples and their augmentation in augment.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
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

from monitor import SAMPLE_RATE
from monitor.core.levels import frame_db
from monitor.inference.models import build, count_macs, count_params, streamed_macs_per_second
from monitor.inference.weights import (MODELS_DIR, load_model, read_manifest, sha256_of, write_manifest_entry,
                                      write_operating_point)
from monitor.offline.evaluation import Windows
from monitor.training.augment import colour, make_batch, mixup, spec_augment
from monitor.training.cards import render
from monitor.training.export_onnx import exports_line
from monitor.training.material import ABLATIONS, ACTIVE_HOP, Pool, load_cache, rms, run_file
from monitor.training.negatives import Generated, Negatives, babble, background, chopped_cry, voiced_bursts
from monitor.training.operating_point import SweepReport

ROOT = Path(__file__).resolve().parents[2]
# The detector shipped by commit af0651e (issue 9's retraining on every real negative, window form; git history
# keeps it and its own recipe reproducible). The streaming form has the same layers and shapes, so it starts
# from those weights and only learns to do without the zero padding, which takes a fraction of a full training.
INIT = "af0651e:models/detector.pt"


def mine_hard_negatives(model, rng: np.random.Generator, negatives: Negatives, candidates: int, keep: int) -> list:
    """The ``keep`` highest-scoring of ``candidates`` fresh training backgrounds (before colour and gain, which
    every use re-draws)."""
    raw = [background(rng, negatives) for _ in range(candidates)]
    coloured = [colour(b, rng) for b in raw]
    x = np.stack([c * 10 ** (rng.uniform(-50, -12) / 20) / rms(c) for c in coloured])
    x = torch.from_numpy(np.clip(x, -1, 1).astype(np.float32))
    order = np.argsort(-scores(model, x))
    return [raw[i] for i in order[:keep]]


@torch.no_grad()
def scores(model, x: torch.Tensor) -> np.ndarray:
    model.eval()
    return torch.cat([torch.sigmoid(model(x[i : i + 128])) for i in range(0, len(x), 128)]).numpy()


def window_metrics(windows: Windows, threshold: float) -> dict:
    """Precision, recall and F1 of ``windows`` at ``threshold``, as the training log and the card record them:
    counted by the evaluation's :meth:`~monitor.offline.evaluation.Windows.precision_recall_f1`, with 0 where it
    has nothing to count (no window at the threshold, no cry).

    Example:
        >>> window_metrics(Windows(np.array([True, False]), np.array([0.2, 0.1])), 0.5)
        {'threshold': 0.5, 'precision': 0.0, 'recall': 0.0, 'f1': 0.0}
    """
    precision, recall, f1 = windows.precision_recall_f1(threshold)
    return {"threshold": threshold, "precision": precision or 0.0, "recall": recall or 0.0, "f1": f1 or 0.0}


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


def held_out_streams(audio: np.ndarray, clips: list[dict]) -> tuple[list, list]:
    """Held-out clips, each between 2 s before and 4 s after of a quiet room (−80 dBFS noise).

    Returns ``[(category, path, stream)]`` for every held-out non-cry clip of the short categories (vocal:
    shouts, adult laughs, coughs; animal; household), which the daemon must not call a cry, and
    ``[(path, onset_s, stream)]`` for every held-out cry clip, with its onset at the first 50 ms frame within
    20 dB of the clip's peak.
    """
    quiet = np.random.default_rng(3).standard_normal(6 * SAMPLE_RATE).astype(np.float32) * 1e-4

    def in_quiet(c: dict) -> np.ndarray:
        clip = audio[c["offset"] : c["offset"] + c["length"]].astype(np.float32)
        return np.concatenate([quiet[: 2 * SAMPLE_RATE], clip, quiet[: 4 * SAMPLE_RATE]])

    val = [c for c in clips if c["split"] == "val"]
    negatives = [(c["category"], c["path"], in_quiet(c)) for c in val
                 if c["category"] in ("vocal", "animal", "household") and c["length"] < 30 * SAMPLE_RATE]
    cries = []
    for c in (c for c in val if c["label"] == "cry"):
        db = frame_db(audio[c["offset"] : c["offset"] + c["length"]], ACTIVE_HOP)
        cries.append((c["path"], 2.0 + float(np.argmax(db > db.max() - 20)) * ACTIVE_HOP / SAMPLE_RATE, in_quiet(c)))
    return negatives, cries


def evaluate(model: Path, data: Path, threads: int, val_windows: int) -> dict:
    """Window metrics on validation set B, then the daemon's pipeline on held-out clips in a quiet room (at the
    medium preset)."""
    from monitor.config import Config
    from monitor.core.pipeline import Pipeline
    from monitor.inference.detect import CryDetector

    audio, clips = load_cache(data)
    config = Config()
    config = dataclasses.replace(config, classifier=dataclasses.replace(config.classifier, enabled=False))
    detector = CryDetector(dataclasses.replace(config.detector, model=model))
    torch.set_num_threads(threads)
    val = {label: [c for c in clips if c["split"] == "val" and c["label"] == label] for label in ("cry", "notcry")}
    x, y = make_batch(np.random.default_rng(2002), Pool(audio, val["cry"], True),
                      Negatives(audio, val["notcry"]), val_windows)
    windows = Windows(y.numpy() > 0.5, scores(detector.runtime.model, x))
    medium = detector.presets["medium"].start_threshold
    window = {"windows": int(windows.labels.size), "positives": int(windows.labels.sum()), "roc_auc": windows.auc,
              "at_0.5": window_metrics(windows, 0.5), "at_start_threshold": window_metrics(windows, medium)}

    def run(samples: np.ndarray) -> tuple[list, float]:
        pipeline = Pipeline(config, detector)
        result = pipeline.feed(samples)
        starts = [e for e in result.events + pipeline.close().events if e.type == "cry_start"]
        return starts, max((w.score for w in result.scores), default=0.0)

    negative_streams, cry_streams = held_out_streams(audio, clips)
    negatives: dict[str, dict] = {}
    for kind, path, stream in negative_streams:
        starts, peak = run(stream)
        row = negatives.setdefault(kind, {"clips": 0, "fired": 0, "fired_paths": [], "laughs": 0, "laughs_fired": 0,
                                          "peaks": []})
        row["clips"] += 1
        row["fired"] += bool(starts)
        row["peaks"].append(peak)
        if starts:
            row["fired_paths"].append(path)
        if Path(path).stem.lower() == "laugh":
            row["laughs"] += 1
            row["laughs_fired"] += bool(starts)
    latencies, missed = [], []
    for path, onset, stream in cry_streams:
        starts, _ = run(stream)
        if starts:
            latencies.append(starts[0].t - onset)
        else:
            missed.append(path)
    clip_level = {"clips": len(cry_streams), "detected": len(latencies), "missed": missed,
                  "latency_median_s": float(np.median(latencies)) if latencies else None,
                  "latency_p95_s": float(np.percentile(latencies, 95)) if latencies else None}
    return {"model": detector.model_id, "window": window, "negatives": negatives, "cries": clip_level}


def write_card(metrics: dict, args, sweep: SweepReport, ablation_results: dict[str, dict]) -> None:
    log = json.loads(run_file(args, "train_log", "json").read_text())
    cache_clips = load_cache(args.data)[1]
    by_category = {}
    for c in cache_clips:
        row = by_category.setdefault(c["category"], {"train": [0, 0.0], "val": [0, 0.0]})
        row[c["split"]][0] += 1
        row[c["split"]][1] += c["length"] / SAMPLE_RATE / 60
    data_rows = "\n".join(f"| {k} | {v['train'][0]} ({v['train'][1]:.1f} min) | {v['val'][0]} ({v['val'][1]:.1f} min) |"
                          for k, v in sorted(by_category.items()))
    val_groups = ", ".join(sorted({c["group"] for c in cache_clips if c["split"] == "val" and c["label"] == "notcry"}))
    entry = read_manifest(args.out.parent)[args.out.name]
    w, cries = metrics["window"], metrics["cries"]
    neg_rows = "\n".join(f"| {k} | {v['clips']} | {v['fired']} | {v['laughs_fired']} of {v['laughs']} |"
                         for k, v in sorted(metrics["negatives"].items()))
    history = "\n".join(f"| {h['step']} | {h['precision']:.3f} | {h['recall']:.3f} | {h['f1']:.3f} |"
                        for h in log["history"])
    ablation_rows = "\n".join(
        f"| {name} | {m['model']} | {m['negatives']['vocal']['fired']} of {m['negatives']['vocal']['clips']} | "
        f"{m['negatives']['vocal']['laughs_fired']} of {m['negatives']['vocal']['laughs']} | "
        f"{m['cries']['detected']} of {m['cries']['clips']} | "
        f"{sum(p >= 0.5 for p in m['negatives']['vocal']['peaks'])} of {m['negatives']['vocal']['clips']} | "
        f"{np.median(m['negatives']['vocal']['peaks']):.3f} | {m['window']['roc_auc']:.4f} |"
        for name, m in ablation_results.items())
    model = build(entry.arch, **entry.kwargs).eval()
    macs = count_macs(model, torch.zeros(1, model.window_samples)) / 1e9
    gmac_per_s = streamed_macs_per_second(model, round(entry.hop_seconds * SAMPLE_RATE)) / 1e9
    if log.get("teacher"):
        origin = (f"It is a distilled student: the same streaming form with blocks of {entry.kwargs['widths']} "
                  f"channels, its weights cut out of the teacher's by L1 norm (structured pruning), then trained "
                  f"{log['steps']} steps on the teacher's soft labels beside the hard ones.")
        parent = ""
    else:
        origin = (f"The streaming form is CNN10's layers with CNN10's parameter count; it was fine-tuned into this "
                  f"form ({log['steps']} steps) because the window form's zero padding at each window's edges is "
                  "part of what it had learned.")
        parent = PARENT
    distilled = (f"distilled from `{log['teacher']}` (soft-label weight {log['distil_weight']}, temperature "
                 f"{log['temperature']}); " if log.get("teacher") else "")
    ablation_note = ("\nThis model was trained with the same laugh-like negatives as the shipped detector; which of them "
                     "helped is measured in `models/detector.md`.\n" if args.out != MODELS_DIR / "detector.pt" else
                     "" if len(ablation_results) > 1 else
                     "\n**No ablation was run for this card**, so which laugh-like negatives helped is *not* measured: "
                     "a variant costs a 26-minute training (`python tools/train_detector.py --ablation NAME "
                     "--laugh-negatives [chopped] [voiced]`, then the card stage again), which the session that "
                     "trained this model could not fit after its calibration.\n")
    text = render(
        "detector.md", exports=exports_line(args.out),
        title="streaming CNN10" + (f", widths {entry.kwargs['widths']}" if entry.kwargs else ""),
        file=args.out.name, description="PANNs-style CNN10 in streaming form" + (
            " with narrower blocks (a distilled student)" if log.get("teacher") else ""),
        params=count_params(model), macs=macs, gmac_per_s=gmac_per_s, teacher=distilled, origin=origin, parent=parent,
        command=shlex.join(["python", "tools/train_detector.py", *log["argv"]]), lr=log.get("lr", 1e-3),
        sha=entry.sha256, steps=log["steps"], batch=log["batch"], minutes=log["minutes"],
        init=log.get("init") or "none (from scratch)", laughs=", ".join(log.get("laugh_negatives", [])) or "none",
        data_rows=data_rows, val_groups=val_groups, w=w, a=w["at_0.5"], s=w["at_start_threshold"],
        neg_rows=neg_rows, cries=cries, history=history, ablation_rows=ablation_rows,
        mine_every=args.mine_every, mine_keep=args.mine_keep, mine_candidates=args.mine_candidates,
        missed="\n".join(f"- {m}" for m in cries["missed"]) or "- none", ablation_note=ablation_note, sweep=sweep)
    args.out.with_suffix(".md").write_text(text)


PARENT = """
Its parent, issue 9's window-form detector (4c0674269b8d, commit af0651e, whose card holds the measurement), at
its own medium preset (0.95, 3 of 4, hop 0.25 s) on the same report set: 46/71 cries, precision 0.88, F1 0.748,
2.27 false alarms per hour, 6/11 at 0 dB under white noise, latency median 4.07 s, p95 18.48 s.
"""


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
        sweep = SweepReport.from_json(run_file(args, "sweep", "json").read_text())
        stored = run_file(args, "metrics", "json")
        metrics = json.loads(stored.read_text()) if stored.exists() else {}
        if (metrics.get("model"), metrics.get("presets")) != (sha256_of(args.out)[:12], preset_key(args.out)):
            # new weights or presets (else it was measured already, as it is now)
            metrics = evaluate(args.out, args.data, args.threads, args.val_windows)
            metrics["presets"] = preset_key(args.out)
            stored.write_text(json.dumps(metrics, indent=1))
        write_card(metrics, args, sweep, ablations(args, metrics))
        print(json.dumps(metrics, indent=1))


STAGES = ("detector", "calibrate", "card")


def preset_key(model: Path) -> str:
    """The medium preset and hop a model's held-out clips were measured at (recalibrating means measuring again)."""
    entry = read_manifest(model.parent)[model.name]
    return json.dumps([dataclasses.asdict(entry.operating_point["medium"]), entry.hop_seconds])


def ablations(args, metrics: dict) -> dict[str, dict]:
    """Held-out clip results of the shipped detector and of every ablation trained (``--ablation NAME``), all at
    the shipped medium preset's start threshold, N of M and hop."""
    shipped = read_manifest(args.out.parent)[args.out.name]
    rows = {" + ".join(args.laugh_negatives) + " (shipped)": metrics}
    for folder in sorted(ABLATIONS.glob("*/")) if args.out == MODELS_DIR / "detector.pt" else ():
        if (folder / "laugh_negatives.json").exists():
            # measured at the shipped model's medium preset, so remembered per shipped model
            measured = folder / f"metrics-at-{shipped.sha256[:12]}.json"
            if not measured.exists():
                write_operating_point(folder, "detector.pt", shipped.operating_point, shipped.hop_seconds)
                measured.write_text(json.dumps(evaluate(folder / "detector.pt", args.data, args.threads,
                                                        args.val_windows)))
            laughs = json.loads((folder / "laugh_negatives.json").read_text())
            rows[" + ".join(laughs) or "none (real adult laughs only)"] = json.loads(measured.read_text())
    return rows

if __name__ == "__main__":
    main()
