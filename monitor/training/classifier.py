#!/usr/bin/env python3
"""Train and evaluate a cry-reason classifier with k-fold cross-validation grouped by baby.

    python tools/train_classifier.py --arch ietma          # 5-fold CV of one architecture, metrics as JSON
    python tools/reason_table.py                           # every architecture, the table, the shipped model

Data: Donate-a-cry *cleaned* clips (5 reasons; the raw uploads' tags are noisier and are not used). Each clip is
decoded once to the shared log-mel and cached (cache/classifier/). Folds: every clip of a ``group`` (one app
install ≈ one baby) is in one fold; groups are dealt to folds rarest class first, so each of the 5 classes
(burping has 7 babies) lands in as many folds as it can.

For test fold k, fold k+1 is the validation fold (early stopping on its macro-F1, temperature fitting) and the
other folds train: the test fold is never used to choose anything.

Recipe: 1.5 s random crops of the silence-trimmed log-mel; class-balanced sampling (each class equally likely);
augmentation in the power-mel domain: household/speech/music noise from the detector's training groups and
synthetic coloured noise mixed at 5–30 dB SNR (p = 0.5), gain ±6 dB, SpecAugment (2 × ≤ 20 frames, 2 × ≤ 8 mel
bins); MFCC CMVN statistics from the training folds; Adam 1e-3, weight decay 1e-4, cosine decay; cross-entropy.
Evaluation uses :func:`monitor.inference.classify.prepare` (trimmed, centre 4 s), exactly what the daemon does.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]

from monitor import SAMPLE_RATE
from monitor.audio.files import read_file
from monitor.core.baby import AGE_BANDS, SEXES, metadata_vector
from monitor.core.events import REASONS
from monitor.inference.classify import MAX_FRAMES, prepare, trim_silence
from monitor.inference.models import count_macs, count_params
from monitor.inference.models.logmel import LogMel
from monitor.inference.models.reason import ReasonNet
from monitor.offline.data import read_clips, split_groups
from monitor.offline.evaluation import f1

CACHE = ROOT / "cache" / "classifier"
CROP = 151  # 1.5 s training crops (CPU budget; evaluation sees up to 4 s)
FOLDS = 5

QUARTER = [16, 32, 64, 128, 256, 512]  # CNN14 at quarter width: full CNN14 is 16× the MACs (CPU)
# One row of the table each: the ReasonNet settings (``backbone`` defaults to the row's name), documented in the card
BACKBONES: dict[str, dict] = {
    "ietma": {},
    "ietma-no-mca": {},
    "ietma-no-rse": {},
    "ietma-no-diffattn": {},
    "ietma-paper": {},
    "ecapa": {},
    "resnet18": {},
    "cnn14-stat": {"widths": QUARTER},
    "cnn14-mha": {"widths": QUARTER},
    "tbdm": {},
    "cnn14-mha-meta": {"backbone": "cnn14-mha", "metadata": True, "widths": QUARTER},
    "cnn14-mha-multitask": {"widths": QUARTER},
}
# Where a row's recipe differs from the shared one (the module docstring): TBDM-Net's own optimiser settings; the
# multi-task design's two stages (epochs of stage 1 on the auxiliary tasks only, the auxiliaries' loss weight)
RECIPES: dict[str, dict] = {
    "tbdm": {"betas": (0.93, 0.98), "label_smoothing": 0.1},
    "cnn14-mha-multitask": {"stage1_epochs": 3, "aux_weight": 0.3},
}
METADATA_DROPOUT = 0.25  # each field is hidden this often in training, so "not told" is an input the model knows


def new_model(arch: str) -> ReasonNet:
    kwargs = dict(BACKBONES[arch])
    return ReasonNet(kwargs.pop("backbone", arch), **kwargs)


# ---------------------------------------------------------------- data

def build_cache(data_dir: Path) -> dict:
    """Log-mel of every cleaned cry (trimmed) and a bank of training-split noise log-mel, saved to CACHE."""
    logmel = LogMel()
    clips = read_clips(data_dir)
    split = split_groups(clips)
    cries = [c for c in clips if c.source == "donateacry-cleaned"]
    items = []
    with torch.no_grad():
        for c in cries:
            x = torch.from_numpy(trim_silence(logmel(torch.from_numpy(read_file(c.path)).unsqueeze(0))[0].numpy()))
            items.append({"path": str(c.path.relative_to(data_dir)), "reason": c.reason, "group": c.group,
                          "sex": c.sex, "age": c.age, "logmel": x.half()})
        noise = []  # non-cry audio of the detector's training groups: what a nursery mic hears besides the baby
        rng = np.random.default_rng(0)
        for kind in ("noise", "music", "speech"):
            pool = [c for c in clips if c.label == "notcry" and split[c.group] == "train" and f"/{kind}/" in str(c.path)]
            parts, seconds = [], 0.0
            for i in rng.permutation(len(pool)):
                parts.append(read_file(pool[i].path)[: 60 * SAMPLE_RATE])
                seconds += parts[-1].size / SAMPLE_RATE
                if seconds >= 180:
                    break
            noise.append(logmel(torch.from_numpy(np.concatenate(parts)).unsqueeze(0))[0].half())
        for exponent in (0.0, 0.5, 1.0):  # white, pink, brown
            spectrum = np.fft.rfft(rng.standard_normal(20 * SAMPLE_RATE))
            spectrum /= np.maximum(np.fft.rfftfreq(20 * SAMPLE_RATE, 1 / SAMPLE_RATE), 20.0) ** exponent
            wave = np.fft.irfft(spectrum).astype(np.float32)
            noise.append(logmel(torch.from_numpy(wave / np.abs(wave).max()).unsqueeze(0))[0].half())
    data = {"cries": items, "noise": [n for n in noise if n.shape[0] >= CROP]}
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(data, CACHE / "features.pt")
    return data


def load_data(data_dir: Path) -> dict:
    path = CACHE / "features.pt"
    return torch.load(path, weights_only=True) if path.exists() else build_cache(data_dir)


def assign_folds(groups: list[str], labels: list[str], k: int = FOLDS) -> dict[str, int]:
    """Group → fold. Groups are dealt rarest class first, each to the fold holding the fewest clips of that
    class (ties: fewest clips overall, then lowest index), so rare reasons spread over the folds."""
    counts = Counter(labels)
    by_group: dict[str, Counter] = defaultdict(Counter)
    for g, y in zip(groups, labels):
        by_group[g][y] += 1
    rarest = {g: min(c, key=lambda y: (counts[y], y)) for g, c in by_group.items()}
    order = sorted(by_group, key=lambda g: (counts[rarest[g]], -sum(by_group[g].values()), g))
    per_class = np.zeros((k, len(counts)))
    classes = sorted(counts)
    folds: dict[str, int] = {}
    for g in order:
        col = classes.index(rarest[g])
        fold = min(range(k), key=lambda f: (per_class[f, col], per_class[f].sum(), f))
        folds[g] = fold
        for y, n in by_group[g].items():
            per_class[fold, classes.index(y)] += n
    return folds


# ---------------------------------------------------------------- augmentation

def augment(batch: torch.Tensor, noise: list[torch.Tensor], rng: np.random.Generator) -> torch.Tensor:
    """Noise mixing and gain in the power-mel domain, then SpecAugment. ``batch`` is (B, T, mels) in dB."""
    out = batch.clone()
    for i in range(len(out)):
        if rng.random() < 0.5:
            n = noise[int(rng.integers(len(noise)))]
            start = int(rng.integers(0, n.shape[0] - out.shape[1] + 1))
            n = n[start : start + out.shape[1]].float()
            snr = rng.uniform(5, 30)
            signal_db = 10 * torch.log10(torch.mean(10 ** (out[i] / 10)))
            noise_db = 10 * torch.log10(torch.mean(10 ** (n / 10)) + 1e-20)
            n = n + (signal_db - noise_db - snr)
            out[i] = 10 * torch.log10(10 ** (out[i] / 10) + 10 ** (n / 10))
        out[i] += rng.uniform(-6, 6)
        for size, width, dim in ((out.shape[1], 20, 0), (out.shape[2], 8, 1)):
            for _ in range(2):
                w = int(rng.integers(0, width + 1))
                s = int(rng.integers(0, size - w + 1))
                if dim == 0:
                    out[i, s : s + w] = out[i].mean()
                else:
                    out[i, :, s : s + w] = out[i].mean()
    return out


def random_crop(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    if x.shape[0] < CROP:
        x = x.repeat(-(-CROP // x.shape[0]), 1)
    start = int(rng.integers(0, x.shape[0] - CROP + 1))
    return x[start : start + CROP].float()


# ---------------------------------------------------------------- metrics

def metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(REASONS)) -> dict:
    """Accuracy, macro-F1 and UAR over the classes present in truth or prediction, and the confusion matrix."""
    confusion = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    present = [c for c in range(n_classes) if confusion[c].sum() or confusion[:, c].sum()]
    f1s, recalls = [], []
    for c in present:
        tp = confusion[c, c]
        precision = tp / max(confusion[:, c].sum(), 1)
        recall = tp / max(confusion[c].sum(), 1)
        f1s.append(f1(precision, recall))
        if confusion[c].sum():
            recalls.append(recall)
    return {"accuracy": float(np.mean(y_true == y_pred)), "macro_f1": float(np.mean(f1s)),
            "uar": float(np.mean(recalls)), "confusion": confusion.tolist()}


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature minimising validation NLL (log-parameterised, LBFGS)."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(np.mean(predicted[in_bin] == labels[in_bin]) - confidence[in_bin].mean())
    return float(ece)


# ---------------------------------------------------------------- training

def cmvn(model: ReasonNet, items: list[dict]) -> None:
    if model.takes_logmel:
        return
    feats = torch.cat([model.mfcc.from_logmel(it["logmel"].float().unsqueeze(0))[0] for it in items], dim=1)
    model.mfcc.set_statistics(feats.mean(dim=1), feats.var(dim=1))


@torch.no_grad()
def predict(model: ReasonNet, items: list[dict]) -> torch.Tensor:
    """Uncalibrated logits (N, classes) of each item's prepared (trimmed, centre 4 s) log-mel, as deployed.
    Clips of equal prepared length are batched (eval-mode BatchNorm makes that exact)."""
    model.eval()
    prepared = [torch.from_numpy(prepare(it["logmel"].float().numpy())) for it in items]
    out = torch.empty(len(items), len(model.classes))
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, x in enumerate(prepared):
        by_length[x.shape[0]].append(i)
    for indices in by_length.values():
        for start in range(0, len(indices), 64):
            chunk = indices[start : start + 64]
            out[chunk] = model.uncalibrated(torch.stack([prepared[i] for i in chunk]),
                                            metadata_batch([items[i] for i in chunk]))
    return out


def metadata_batch(items: list[dict], rng: np.random.Generator | None = None) -> torch.Tensor:
    """The items' sex and age band as :func:`monitor.core.baby.metadata_vector` rows; with ``rng``, each field is
    hidden with probability METADATA_DROPOUT (training)."""
    def shown(value: str) -> str | None:
        return value if value and (rng is None or rng.random() >= METADATA_DROPOUT) else None

    return torch.from_numpy(np.stack([metadata_vector(shown(it["sex"]), shown(it["age"])) for it in items]))


def auxiliary_loss(sex: torch.Tensor, age: torch.Tensor, items: list[dict]) -> torch.Tensor:
    """Cross-entropy of the sex and age-band logits against the items' tags, summed (a missing tag is ignored)."""
    def index(options: tuple[str, ...], value: str) -> int:
        return options.index(value) if value in options else -100  # cross_entropy's ignore_index

    return (F.cross_entropy(sex, torch.tensor([index(SEXES, it["sex"]) for it in items]))
            + F.cross_entropy(age, torch.tensor([index(AGE_BANDS, it["age"]) for it in items])))


def train_model(arch: str, train: list[dict], val: list[dict], noise: list[torch.Tensor], args,
                seed: int) -> tuple[ReasonNet, dict]:
    """Train on ``train``, early-stop on ``val`` macro-F1, fit the temperature on ``val``. Returns the model at
    its best epoch and a log."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = new_model(arch)
    recipe = RECIPES.get(arch, {})
    cmvn(model, train)
    labels = np.array([REASONS.index(it["reason"]) for it in train])
    weights = 1.0 / np.bincount(labels, minlength=len(REASONS))[labels]
    weights /= weights.sum()
    val_y = torch.tensor([REASONS.index(it["reason"]) for it in val])
    multitask = hasattr(model.backbone, "all_logits")
    if multitask:
        pretrain_auxiliary(model, train, noise, args, rng, recipe["stage1_epochs"])
        for layer in model.backbone.lowest_layers():
            layer.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=1e-4,
                           betas=recipe.get("betas", (0.9, 0.999)))
    total = args.epochs * args.steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / total)))
    best, best_state, history, stale = -1.0, None, [], 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        if multitask:  # frozen means frozen: their BatchNorm statistics too
            for layer in model.backbone.lowest_layers():
                layer.eval()
        for _ in range(args.steps_per_epoch):
            idx = rng.choice(len(train), size=args.batch, p=weights)
            batch = [train[i] for i in idx]
            x = augment(torch.stack([random_crop(it["logmel"], rng) for it in batch]), noise, rng)
            target = torch.from_numpy(labels[idx])
            if multitask:
                reason, sex, age = model.backbone.all_logits(model.features(x))
                loss = F.cross_entropy(reason, target) + recipe["aux_weight"] * auxiliary_loss(sex, age, batch)
            else:
                metadata = metadata_batch(batch, rng) if model.uses_metadata else None
                loss = F.cross_entropy(model.uncalibrated(x, metadata), target,
                                       label_smoothing=recipe.get("label_smoothing", 0.0))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        score = metrics(val_y.numpy(), predict(model, val).argmax(1).numpy())["macro_f1"]
        history.append({"epoch": epoch, "loss": round(loss.item(), 4), "val_macro_f1": round(score, 4)})
        if score > best:
            best, stale = score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= args.patience:
                break
    model.load_state_dict(best_state)
    model.temperature.fill_(fit_temperature(predict(model, val), val_y))
    best_epoch = max(history, key=lambda h: h["val_macro_f1"])["epoch"]
    return model, {"history": history, "best_epoch": best_epoch, "temperature": float(model.temperature)}


def pretrain_auxiliary(model: ReasonNet, train: list[dict], noise: list[torch.Tensor], args, rng: np.random.Generator,
                       epochs: int) -> None:
    """Stage 1 of the multi-task recipe: the encoder learns sex and age band only (equal weights), on uniformly
    drawn clips (the reason labels play no part)."""
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    model.train()
    for _ in range(epochs * args.steps_per_epoch):
        batch = [train[i] for i in rng.integers(0, len(train), size=args.batch)]
        x = augment(torch.stack([random_crop(it["logmel"], rng) for it in batch]), noise, rng)
        _, sex, age = model.backbone.all_logits(model.features(x))
        loss = 0.5 * auxiliary_loss(sex, age, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()


def cross_validate(arch: str, data: dict, args) -> dict:
    items = data["cries"]
    folds = assign_folds([it["group"] for it in items], [it["reason"] for it in items])
    fold_of = np.array([folds[it["group"]] for it in items])
    y = np.array([REASONS.index(it["reason"]) for it in items])
    all_pred, all_true, all_probs, per_fold = [], [], [], []
    started = time.time()
    for k in range(FOLDS):
        val_fold = (k + 1) % FOLDS
        train = [it for it, f in zip(items, fold_of) if f not in (k, val_fold)]
        val = [it for it, f in zip(items, fold_of) if f == val_fold]
        test = [it for it, f in zip(items, fold_of) if f == k]
        model, log = train_model(arch, train, val, data["noise"], args, seed=args.seed + k)
        torch.save(model.state_dict(), CACHE / f"cv-{arch}-fold{k}.pt")  # the adaptation study needs unseen babies
        probs = torch.softmax(predict(model, test) / model.temperature, dim=1).numpy()
        uncalibrated = torch.softmax(predict(model, test), dim=1).numpy()
        pred = probs.argmax(1)
        m = metrics(y[fold_of == k], pred)
        m.update(log, test_clips=len(test), ece=expected_calibration_error(probs, y[fold_of == k]),
                 ece_uncalibrated=expected_calibration_error(uncalibrated, y[fold_of == k]))
        per_fold.append(m)
        all_pred.append(pred)
        all_true.append(y[fold_of == k])
        all_probs.append(probs)
        print(f"{arch} fold {k}: acc {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f} UAR {m['uar']:.3f} "
              f"best epoch {log['best_epoch']} T {log['temperature']:.2f} ({time.time() - started:.0f}s)", flush=True)
    true, pred, probs = np.concatenate(all_true), np.concatenate(all_pred), np.concatenate(all_probs)
    net = new_model(arch)
    example = torch.zeros(1, MAX_FRAMES, 64)
    return {
        "arch": arch, "backbone_kwargs": BACKBONES[arch], "folds": per_fold,
        "mean": {key: float(np.mean([f[key] for f in per_fold])) for key in ("accuracy", "macro_f1", "uar", "ece")},
        "std": {key: float(np.std([f[key] for f in per_fold])) for key in ("accuracy", "macro_f1", "uar", "ece")},
        "pooled": metrics(true, pred), "pooled_probs": probs.round(4).tolist(), "pooled_true": true.tolist(),
        "params": count_params(net.backbone), "macs": count_macs(net.eval(), example), "minutes": (time.time() - started) / 60,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=20)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> None:
    p = parser()
    p.add_argument("--arch", default="ietma", choices=sorted(BACKBONES))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = cross_validate(args.arch, load_data(args.data), args)
    result.pop("pooled_probs")
    result.pop("pooled_true")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
