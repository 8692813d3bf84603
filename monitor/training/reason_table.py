#!/usr/bin/env python3
"""The seed paper's comparison on our data, and the shipped reason classifier, from one command.

    python tools/reason_table.py          # CV every architecture, print the table, ship the best, write the card

Every architecture in ``train_classifier.BACKBONES`` gets the same 5-fold cross-validation grouped by baby
(tools/train_classifier.py has the recipe). Each one's result is cached in cache/classifier/cv-<arch>.json, so an
interrupted run resumes (``--fresh`` recomputes). The architecture with the best mean macro-F1 is then trained on
every clip for the median of its folds' best epoch counts, given the median of its folds' temperatures (each
fitted on a validation fold), and shipped as models/classifier.pt with the card models/classifier.md. Last, the
per-baby learners are studied on the raw uploads with that architecture's fold models
(:mod:`monitor.training.adaptation_study`); the learner that runs by default and the count prior's fitted values go
into the manifest entries of the model and its exports (``adaptation``, ``answer_prior``), the table into the card.

    python tools/reason_table.py --adaptation-only   # only that last step, for the shipped model

redoes the study alone (its fold models are made first if they are missing: the architecture's cross-validation,
about five minutes on one thread, which gives the card's row for it again) and rewrites the card's section on it,
leaving the rest of the card as it was.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from monitor.core.events import REASONS
from monitor.inference.weights import MODELS_DIR, write_adaptation, write_manifest_entry
from monitor.training import adaptation_study
from monitor.training import classifier as T
from monitor.training.cards import render
from monitor.training.export_onnx import exports_line

LABELS = {
    "majority": "Always \"hungry\" (no model)",
    "ietma": "Improved ECAPA-TDNN (IETMA, as coded)",
    "ietma-no-mca": "  w/o MCA",
    "ietma-no-rse": "  w/o RSE",
    "ietma-no-diffattn": "  w/o differential attention",
    "ietma-paper": "IETMA as the paper describes it",
    "ecapa": "ECAPA-TDNN",
    "resnet18": "ResNet18",
    "cnn14-stat": "CNN14 + statistics pooling (¼ width)",
    "cnn14-mha": "CNN14 + multi-head attention pooling (¼ width)",
    "tbdm": "TBDM-Net (13 MFCC)",
    "cnn14-mha-meta": "  + sex and age as pre-hoc input",
    "cnn14-mha-multitask": "  + sex and age as auxiliary tasks (ARI, co-attention, two stages)",
}
METADATA_ROWS = ("cnn14-mha-meta", "cnn14-mha-multitask")  # each against the backbone it extends, cnn14-mha


def full_label(arch: str) -> str:
    """A row's label on its own: an indented row (an ablation or a variant) names the row it changes."""
    label = LABELS[arch]
    if not label.startswith("  "):
        return label
    parent = "cnn14-mha" if arch in METADATA_ROWS else "ietma"
    return f"{LABELS[parent]}, {label.strip()}"


def majority_baseline(data: dict) -> dict:
    """Always "hungry" (the majority class), on the same test folds: the floor every model must clear."""
    items = data["cries"]
    folds = T.assign_folds([it["group"] for it in items], [it["reason"] for it in items])
    y = np.array([REASONS.index(it["reason"]) for it in items])
    fold_of = np.array([folds[it["group"]] for it in items])
    majority = int(np.bincount(y).argmax())
    per_fold = [T.metrics(y[fold_of == k], np.full(int((fold_of == k).sum()), majority)) for k in range(T.FOLDS)]
    keys = ("accuracy", "macro_f1", "uar")
    return {"arch": "majority", "params": 0, "macs": 0, "minutes": 0.0,
            "mean": {**{k: float(np.mean([f[k] for f in per_fold])) for k in keys}, "ece": float("nan")},
            "std": {**{k: float(np.std([f[k] for f in per_fold])) for k in keys}, "ece": float("nan")}}


def table(results: list[dict]) -> str:
    head = ("| model | params | MACs (4 s) | accuracy | macro-F1 | UAR | ECE (calibrated) | minutes |\n"
            "|---|---|---|---|---|---|---|---|")
    rows = []
    for r in results:
        m, s = r["mean"], r["std"]
        rows.append(f"| {LABELS[r['arch']].strip()} (`{r['arch']}`) | {r['params'] / 1e6:.2f} M | {r['macs'] / 1e9:.3f} G | "
                    f"{m['accuracy']:.3f} ± {s['accuracy']:.3f} | {m['macro_f1']:.3f} ± {s['macro_f1']:.3f} | "
                    f"{m['uar']:.3f} ± {s['uar']:.3f} | {'–' if np.isnan(m['ece']) else format(m['ece'], '.3f')} | "
                    f"{r['minutes']:.1f} |")
    return head + "\n" + "\n".join(rows)


def confusion(matrix: list[list[int]]) -> str:
    head = "| true \\ predicted | " + " | ".join(REASONS) + " |\n|---|" + "---|" * len(REASONS)
    return head + "\n" + "\n".join(f"| {REASONS[i]} | " + " | ".join(str(v) for v in row) + " |"
                                   for i, row in enumerate(matrix))


def ship(best: dict, data: dict, args) -> dict:
    """Train ``best['arch']`` on every clip; write models/classifier.pt and its manifest entry."""
    epochs = int(np.median([f["best_epoch"] for f in best["folds"]]))
    temperature = float(np.median([f["temperature"] for f in best["folds"]]))
    args.epochs, args.patience = epochs, epochs + 1
    items = data["cries"]
    # no held-out data is left: the "validation" set only feeds the (discarded) per-epoch log and temperature fit
    model, _ = T.train_model(best["arch"], items, items, data["noise"], args, seed=args.seed + 100)
    model.temperature.fill_(temperature)
    out = MODELS_DIR / "classifier.pt"
    torch.save(model.state_dict(), out)
    digest = write_manifest_entry(MODELS_DIR, out.name, "reason",
                                  {"backbone": best["arch"], "classes": list(REASONS), **best["backbone_kwargs"]})
    return {"epochs": epochs, "temperature": temperature, "sha256": digest}


def coverage(best: dict, threshold: float) -> tuple[float, float]:
    """Share of pooled CV predictions at or above ``threshold`` and their accuracy."""
    probs, true = np.array(best["pooled_probs"]), np.array(best["pooled_true"])
    keep = probs.max(axis=1) >= threshold
    return float(keep.mean()), float(np.mean(probs[keep].argmax(1) == true[keep])) if keep.any() else float("nan")


def main(argv=None) -> None:
    p = T.parser()
    p.add_argument("--archs", nargs="*", default=list(T.BACKBONES))
    p.add_argument("--fresh", action="store_true", help="ignore cached per-architecture results")
    p.add_argument("--no-ship", action="store_true", help="print the table only")
    p.add_argument("--adaptation-only", action="store_true",
                   help="only the adaptation study of the shipped model: manifest and the card's section on it")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = T.load_data(args.data)
    if args.adaptation_only:
        arch = adaptation_study.shipped_arch()
        cross_validated(arch, data, args)  # the study's fold models
        study = adaptation_study.study(arch, args.data, data)
        write_adaptation(MODELS_DIR, "classifier.pt", study["default"], study["prior_fit"]["shipped"])
        rewrite_adaptation_section(MODELS_DIR / "classifier.md", study)
        print(adaptation_section(study))
        return
    started = time.time()
    results = [cross_validated(arch, data, args) for arch in args.archs]
    text = table([*results, majority_baseline(data)])
    print(text)
    if args.no_ship:
        return
    best = max(results, key=lambda r: r["mean"]["macro_f1"])
    shipped = ship(best, data, args)
    study = adaptation_study.study(best["arch"], args.data, data)
    write_adaptation(MODELS_DIR, "classifier.pt", study["default"], study["prior_fit"]["shipped"])
    write_card(results, best, shipped, data, study, sum(r["minutes"] for r in results) + (time.time() - started) / 60)


def cross_validated(arch: str, data: dict, args) -> dict:
    """``arch``'s cross-validation from its cache, or run (and cached) when missing, stale or ``--fresh``."""
    path = T.CACHE / f"cv-{arch}.json"
    folds_saved = all(p.exists() for p in adaptation_study.fold_paths(arch))  # the adaptation study's
    if path.exists() and folds_saved and not args.fresh:
        return json.loads(path.read_text())
    result = T.cross_validate(arch, data, args)
    path.write_text(json.dumps(result))
    return result


def metadata_findings(results: list[dict]) -> list[str]:
    """Each metadata row against its backbone, fold by fold (same folds, so the paired difference is the spread)."""
    by_arch = {r["arch"]: r for r in results}
    base = by_arch.get("cnn14-mha")
    lines = []
    for arch in METADATA_ROWS:
        if base is None or arch not in by_arch:
            continue
        diffs = np.array([f["macro_f1"] - b["macro_f1"] for f, b in zip(by_arch[arch]["folds"], base["folds"])])
        verdict = ("a gain larger than its fold-to-fold spread" if diffs.mean() > diffs.std() else
                   "a loss larger than its fold-to-fold spread" if -diffs.mean() > diffs.std() else
                   "no difference we can tell from noise (a null result)")
        lines.append(f"- {LABELS[arch].strip()} (`{arch}`) vs `cnn14-mha`: {100 * diffs.mean():+.1f} ± "
                     f"{100 * diffs.std():.1f} macro-F1 points over the 5 paired folds (per fold: "
                     + ", ".join(f"{100 * d:+.1f}" for d in diffs) + f"): {verdict}.")
    return lines


def with_interval(v: dict, points: bool = False) -> str:
    """A value and its 95 % interval: ``0.608 (0.532 to 0.681)``, or in points, ``+5.1 (+0.2 to +9.9)``."""
    if points:  # (round first: no "-0.0")
        value, low, high = (round(100 * v[k], 1) + 0.0 for k in ("value", "low", "high"))
        return f"{value:+.1f} ({low:+.1f} to {high:+.1f})"
    return f"{v['value']:.3f} ({v['low']:.3f} to {v['high']:.3f})"


PREDICTOR_LABELS = {"population": "population model", "majority": "baby's majority so far",
                    "adapted": "prototypes", "prior": "count prior"}


def adaptation_table(study: dict) -> str:
    names = adaptation_study.PREDICTORS
    rows = ["| answers so far | guesses (babies) | " + " | ".join(
                f"{PREDICTOR_LABELS[p]} acc / macro-F1" if i == 0 else PREDICTOR_LABELS[p] for i, p in enumerate(names))
            + " |", "|---|---|" + "---|" * len(names)]
    for b in study["buckets"]:
        low, high = b["answers"]
        label = f"{low}" if low == high else f"{low}–{high}" if high < 1000 else f"{low} or more"
        rows.append(f"| {label} | {b['guesses']} ({b['babies']}) | "
                    + " | ".join(f"{b[p]['accuracy']:.3f} / {b[p]['macro_f1']:.3f}" for p in names) + " |")
    return "\n".join(rows)


def intervals_table(study: dict) -> str:
    rows = ["| over all taught guesses | `classifier.adaptation` | accuracy (95 % interval) | macro-F1 (95 % interval) |",
            "|---|---|---|---|"]
    for p in adaptation_study.PREDICTORS:
        v = study["taught"][p]
        rows.append(f"| {PREDICTOR_LABELS[p]} | `{adaptation_study.SETTING[p]}` | {with_interval(v['accuracy'])} | "
                    f"{with_interval(v['macro_f1'])} |")
    for pair, v in study["differences"].items():
        a, b = pair.split("-")
        rows.append(f"| {PREDICTOR_LABELS[a]} − {PREDICTOR_LABELS[b]} (points, paired) | | "
                    f"{with_interval(v['accuracy'], True)} | {with_interval(v['macro_f1'], True)} |")
    return "\n".join(rows)


def decision(study: dict) -> str:
    d = study["differences"]
    default = study["default"]
    versus = (f"count prior − majority {with_interval(d['prior-majority']['accuracy'], True)}, prototypes − majority "
              f"{with_interval(d['adapted-majority']['accuracy'], True)} accuracy points")
    if default in ("prior", "prototypes"):
        return (f"**`{default}`** runs by default (`classifier.adaptation: auto` reads it from the manifest): its "
                f"accuracy minus the baby's majority's has its 95 % interval above 0, the bar the issue set ({versus})")
    if default == "majority":
        return ("**`majority`** runs by default (`classifier.adaptation: auto` reads it from the manifest). Neither "
                f"learner clears the baby's own majority, the bar the issue set ({versus}: intervals that do not lie "
                "above 0), and the majority clears the population model (majority − population "
                f"{with_interval(d['majority-population']['accuracy'], True)} points). So, before any answer the "
                "daemon gives the model's probabilities; after, the shares of the parents' answers, whatever the "
                "sound. `prior` and `prototypes` stay one setting away")
    return ("**`off`** by default: nothing clears the baby's majority, and the majority does not clear the "
            f"population model ({versus}; majority − population "
            f"{with_interval(d['majority-population']['accuracy'], True)})")


def adaptation_section(study: dict) -> str:
    from monitor.config import ClassifierConfig

    fit = study["prior_fit"]
    grid = fit["grid"]
    ratios = [f["b"] / f["a"] for f in [*fit["folds"], fit["shipped"]]]  # a > 0 throughout the grid
    return ADAPTATION_HEADING + render(
        "classifier-adaptation.md",
        arch=study["arch"], study_babies=study["babies"], study_clips=study["clips"], study_scored=study["scored"],
        study_tags=", ".join(f"{tag} {n}" for tag, n in study["tags"].items()),
        grid_a=", ".join(f"{v:g}" for v in grid["a"]), grid_b=", ".join(f"{v:g}" for v in grid["b"]),
        grid_floor=", ".join(f"{v:g}" for v in grid["floor"]),
        per_fold="; ".join(f"fold {f['fold']} ({f['babies']} babies): a {f['a']:g}, b {f['b']:g}, floor {f['floor']:g}"
                           for f in fit["folds"]),
        a=fit["shipped"]["a"], b=fit["shipped"]["b"], floor=fit["shipped"]["floor"],
        ratios=" to ".join(dict.fromkeys(f"{r:g}" for r in (min(ratios), max(ratios)))),
        differ=study["prior_and_majority_differ"]["guesses"],
        prior_right=study["prior_and_majority_differ"]["prior_right"],
        majority_right=study["prior_and_majority_differ"]["majority_right"],
        adaptation=adaptation_table(study), taught=study["taught"]["guesses"], taught_babies=study["taught"]["babies"],
        intervals=intervals_table(study), bootstrap=f"{adaptation_study.BOOTSTRAP:,}", decision=decision(study),
        interpretation=(ADAPTATION_MAJORITY.format(threshold=ClassifierConfig().min_confidence)
                        if study["default"] == "majority" else
                        ADAPTATION_LEARNER if study["default"] in ("prior", "prototypes") else "") + ADAPTATION_CAVEAT)


def rewrite_adaptation_section(card: Path, study: dict) -> None:
    """Replace the card's section on the adaptation study (up to the next section) with this study's."""
    text = card.read_text()
    start = text.index(ADAPTATION_HEADING)
    end = text.index("\n## ", start + len(ADAPTATION_HEADING)) + 1
    card.write_text(text[:start] + adaptation_section(study) + "\n" + text[end:])


def write_card(results: list[dict], best: dict, shipped: dict, data: dict, study: dict, minutes: float) -> None:
    from monitor.config import ClassifierConfig

    threshold = ClassifierConfig().min_confidence
    share, accuracy = coverage(best, threshold)
    counts = {r: sum(1 for it in data["cries"] if it["reason"] == r) for r in REASONS}
    babies = len({it["group"] for it in data["cries"]})
    by_arch = {r["arch"]: r["mean"] for r in results}
    baseline = majority_baseline(data)
    findings = [
        f"- Improved ECAPA-TDNN vs ECAPA-TDNN: {100 * (by_arch['ietma']['macro_f1'] - by_arch['ecapa']['macro_f1']):+.1f} "
        f"macro-F1 points, {100 * (by_arch['ietma']['accuracy'] - by_arch['ecapa']['accuracy']):+.1f} accuracy points "
        "(the paper: +8.8 accuracy points on its data). The goal of +3 macro-F1 points is "
        f"{'met' if by_arch['ietma']['macro_f1'] - by_arch['ecapa']['macro_f1'] >= 0.03 else '**not met**'}.",
        "- The ablations (macro-F1): " + ", ".join(
            f"{LABELS[a].strip()} {by_arch[a]['macro_f1']:.3f}" for a in ("ietma-no-mca", "ietma-no-rse", "ietma-no-diffattn")
        ) + f" against {by_arch['ietma']['macro_f1']:.3f} with everything.",
        f"- The best model, `{best['arch']}`, reaches macro-F1 {best['mean']['macro_f1']:.3f} ± {best['std']['macro_f1']:.3f}; "
        f"always answering \"hungry\" reaches {baseline['mean']['macro_f1']:.3f} (and {100 * baseline['mean']['accuracy']:.0f} % "
        "accuracy). " + ("No model beats that floor by more than its own fold-to-fold spread: on babies it has not "
                         "heard, none of these models tells the Donate-a-cry reasons apart."
                         if best["mean"]["macro_f1"] - baseline["mean"]["macro_f1"] < best["std"]["macro_f1"]
                         else "The best model clears that floor by more than its fold-to-fold spread."),
    ]
    findings += metadata_findings(results)
    if "tbdm" in by_arch:
        findings.append(f"- TBDM-Net reaches macro-F1 {by_arch['tbdm']['macro_f1']:.3f} (UAR {by_arch['tbdm']['uar']:.3f}), "
                        "at a fraction of the paper's width (13 MFCC instead of 39; deviations in "
                        "monitor/inference/models/tbdm.py).")
    majority = max(counts.values()) / sum(counts.values())
    coverage_rows = ["| min_confidence | share of cries given a reason | of those, correct |", "|---|---|---|"]
    for level in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        share_at, accuracy_at = coverage(best, level)
        coverage_rows.append(f"| {level} | {100 * share_at:.1f} % | {100 * accuracy_at:.0f} % |")
    others = "\n".join(f"- `{r['arch']}`: " + " / ".join(" ".join(f"{v:3d}" for v in row) for row in r["pooled"]["confusion"])
                       for r in results if r["arch"] != best["arch"])
    text = render("classifier.md", coverage="\n".join(coverage_rows), other_confusions=others,
        exports=exports_line(MODELS_DIR / "classifier.pt"),
        arch=best["arch"], label=full_label(best["arch"]), sha=shipped["sha256"],
        features="log-mel (CNN14's own batch norm)" if best["arch"].startswith("cnn14") else "13 MFCC with CMVN",
        table=table([*results, majority_baseline(data)]),
        confusion=confusion(best["pooled"]["confusion"]), epochs=shipped["epochs"], temperature=shipped["temperature"],
        counts=", ".join(f"{r} {n}" for r, n in counts.items()), total=sum(counts.values()), babies=babies,
        threshold=threshold, share=100 * share, accuracy=100 * accuracy, findings="\n".join(findings), minutes=minutes,
        majority=100 * majority, ece_before=np.mean([f["ece_uncalibrated"] for f in best["folds"]]),
        ece_after=best["mean"]["ece"], folds=T.FOLDS,
        adaptation_section=adaptation_section(study),
        metadata_dropout=100 * T.METADATA_DROPOUT, stage1=T.RECIPES["cnn14-mha-multitask"]["stage1_epochs"],
        aux_weight=T.RECIPES["cnn14-mha-multitask"]["aux_weight"],
    )
    (MODELS_DIR / "classifier.md").write_text(text)


ADAPTATION_HEADING = "## Learning this baby from the parents' answers"
ADAPTATION_MAJORITY = """What this says: the parents' own answers are the strongest signal here. A baby's parents mostly give the
same answer, so their running majority agrees with their next answer far more often than the model of the sound,
and the model, which cannot tell the reasons apart even across babies, adds nothing measurable to it. With
`majority` the daemon names the baby's usual reason when at least `classifier.min_confidence` ({threshold}) of the
answers agree (after a single answer, always), and says `uncertain` otherwise, the answers' shares as its
probabilities. """
ADAPTATION_LEARNER = """What this says: the sound adds information to what this baby's parents usually answer. """
ADAPTATION_CAVEAT = """The tags are the parents' guesses, unverified and noisy (some uploads hold little crying), so
this measures agreement with the parents, which is all a parent-taught model can learn; most babies have only a
few answers, so the rows beyond 5 answers rest on few babies: read their counts."""


if __name__ == "__main__":
    main()
