"""Does learning from the parents' answers beat what they already know? Measured on the raw Donate-a-cry uploads.

    python -m monitor.training.adaptation_study     # prints the numbers; for the card and the manifest:
    python tools/reason_table.py --adaptation-only  # (the whole tools/reason_table.py run also ends with it)

The raw uploads carry the parents' own tag in the file name and the upload time. The babies (app installs) with
clips of at least two different tags (any of the app's nine, "don't know" included) are replayed one at a time, in
upload order. Before each clip's tag is revealed, four predictors guess it, each the class the daemon runs with
that ``classifier.adaptation`` (:mod:`monitor.core.adaptation`):

* **population** (``off``): the reason model as shipped, knowing nothing of this baby;
* **baby's majority so far** (``majority``, :class:`~monitor.core.adaptation.BabyMajority`): the tag this baby's
  parents gave most often so far (ties: the one given first; before any answer, the population model's guess);
* **adapted** (``prototypes``, :class:`~monitor.core.adaptation.BabyAdaptation`): the population model mixed with
  the baby's prototypes;
* **prior** (``prior``, :class:`~monitor.core.adaptation.AnswerPrior`): ``p ∝ p_model^a · (count + 1)^b``, with
  ``a``, ``b`` and the floor of the reasons only parents know fitted by cross-validation over babies: the babies
  are split into the folds of the population models that scored them, and each fold's babies are guessed with
  the values that did best on the other folds' babies (best accuracy over :data:`GRID`, ties: lowest Brier
  score, then the grid's order). The values the model ships with (its manifest entry) are fitted the same way on
  all babies.

Then the tag is added to the baby's answers (a "don't know" clip is neither scored nor learned from, as in the
daemon). Every guess is filed under the number of answers the baby had when it was made.

The population model must not have heard the baby: each baby is scored by the cross-validation model of the fold
that held its cleaned clips out (``cv-<arch>-fold<k>.pt``, saved by tools/reason_table.py); a baby with no cleaned
clip was never in any training set and gets the fold model its group hashes to. Its embeddings come from the
daemon's own path: numpy log-mel, :func:`monitor.inference.classify.prepare`, ``ReasonNet.classify``.

Accuracy and macro-F1 over the guesses made after at least one answer get 95 % intervals from 2,000 bootstrap
resamples of *babies* (each draw takes a baby's guesses together), and so do the paired differences; the prior's
fitted values are held fixed in the resamples. What runs by default (:func:`default_adaptation`): a learner whose
accuracy minus the majority's has its interval above 0 (the bar the issue set); else the majority, if its
interval against the population model is above 0; else none.

Each clip's population probabilities and embedding are cached (``cache/classifier/adaptation-<arch>.json``, keyed
by the fold models' hashes), so a second run only refits and resamples.

The tags are the parents' guesses, noisy and unverified (some uploads hold little crying): this measures agreement
with the parents, which is what a parent-taught model can at best learn.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from monitor.audio.files import read_file
from monitor.core.adaptation import AnswerPrior, BabyAdaptation, BabyMajority
from monitor.core.baby import metadata_vector
from monitor.core.events import PARENT_REASONS
from monitor.inference.classify import prepare
from monitor.inference.features import logmel
from monitor.inference.weights import MODELS_DIR, read_manifest, sha256_of
from monitor.offline.data import read_clips
from monitor.training import classifier as T

PREDICTORS = ("population", "majority", "adapted", "prior")
# each predictor's name as a ``classifier.adaptation`` value
SETTING = {"population": "off", "majority": "majority", "adapted": "prototypes", "prior": "prior"}
BUCKETS = ((0, 0), (1, 2), (3, 4), (5, 9), (10, 10**6))  # answers the baby had when the guess was made
BOOTSTRAP = 2000
# (a, b, floor) tried for the count prior: b = 0 is the population model, a large b / a the baby's majority
GRID = tuple(itertools.product((0.25, 0.5, 1.0, 2.0), (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0), (0.01, 0.05, 0.2)))
NAME = re.compile(r"^(?P<install>[0-9a-fA-F-]{36})-(?P<time>\d+)(\.\d+)?-")  # one iOS name has fractional seconds


def upload_time(path: Path) -> float:
    """Seconds since 1970 from a Donate-a-cry file name (the Android app wrote milliseconds, iOS seconds)."""
    stamp = int(NAME.match(path.name)["time"])
    return stamp / 1000 if stamp > 10**11 else float(stamp)


def study_babies(data_dir: Path) -> dict[str, list]:
    """Group → that baby's raw uploads in upload order, for the babies with at least two different tags."""
    by_group: dict[str, list] = defaultdict(list)
    for clip in read_clips(data_dir):
        if clip.source == "donateacry-raw":
            by_group[clip.group].append(clip)
    return {g: sorted(clips, key=lambda c: (upload_time(c.path), c.path.name)) for g, clips in sorted(by_group.items())
            if len({c.reason for c in clips}) >= 2}


def shipped_arch() -> str:
    """The architecture of models/classifier.pt: the one whose fold models the card's study uses."""
    return read_manifest(MODELS_DIR)["classifier.pt"].kwargs["backbone"]


def fold_paths(arch: str) -> list[Path]:
    return [T.CACHE / f"cv-{arch}-fold{k}.pt" for k in range(T.FOLDS)]


def fold_models(arch: str, cleaned_groups: list[str], cleaned_reasons: list[str]) -> tuple[list, dict[str, int]]:
    folds = T.assign_folds(cleaned_groups, cleaned_reasons)
    models = []
    for path in fold_paths(arch):
        model = T.new_model(arch)
        model.load_state_dict(torch.load(path, weights_only=True))
        models.append(model.eval())
    return models, folds


def baby_fold(group: str, folds: dict[str, int]) -> int:
    """The fold that held the baby's cleaned clips out; a baby with none, the fold its group hashes to."""
    return folds.get(group, int(hashlib.sha256(group.encode()).hexdigest(), 16) % T.FOLDS)


@torch.no_grad()
def population_outputs(arch: str, babies: dict[str, list], data: dict) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """Each clip's calibrated probabilities and embedding from the fold model that never heard its baby, and each
    baby's fold. Cached by the fold models' hashes and the clips' names."""
    items = data["cries"]
    missing = [p.name for p in fold_paths(arch) if not p.exists()]
    if missing:
        raise SystemExit(f"{T.CACHE}: no {', '.join(missing)}; python tools/reason_table.py --adaptation-only makes "
                         "them (the architecture's cross-validation, about five minutes on one thread)")
    key = hashlib.sha256(json.dumps([[sha256_of(p) for p in fold_paths(arch)],
                                     {g: [c.path.name for c in clips] for g, clips in babies.items()}]).encode())
    cache = T.CACHE / f"adaptation-{arch}.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key.hexdigest():
            return saved["outputs"], saved["folds"]
    models, folds = fold_models(arch, [it["group"] for it in items], [it["reason"] for it in items])
    out: dict[str, list[dict]] = {}
    fold_of = {group: baby_fold(group, folds) for group in babies}
    for group, clips in babies.items():
        model, rows = models[fold_of[group]], []
        for clip in clips:
            x = torch.from_numpy(prepare(logmel(read_file(clip.path))))[None]
            metadata = torch.from_numpy(metadata_vector(clip.sex or None, clip.age or None))[None]
            logits, embedding = model.classify(x, metadata if model.uses_metadata else None)
            probs = torch.softmax(logits[0], dim=0).numpy()
            rows.append({"tag": clip.reason, "probs": dict(zip(model.classes, probs.tolist())),
                         "embedding": embedding[0].numpy().round(5).tolist()})
        out[group] = rows
    cache.write_text(json.dumps({"key": key.hexdigest(), "outputs": out, "folds": fold_of}))
    return out, fold_of


def top(probs: dict[str, float]) -> str:
    return max(probs, key=probs.get)


def replay(outputs: dict[str, list[dict]], prior: dict[str, tuple[float, float, float]] | None = None) -> list[dict]:
    """Every scored guess: baby, answers so far, the true tag and each predictor's guess (the count prior's only
    with ``prior``: baby → its ``(a, b, floor)``)."""
    guesses = []
    for group, rows in outputs.items():
        answers: list[tuple[str, np.ndarray]] = []
        for row in rows:
            tag, probs, embedding = row["tag"], row["probs"], np.asarray(row["embedding"])
            if tag in PARENT_REASONS:
                guess = {"baby": group, "answers": len(answers), "true": tag, "population": top(probs),
                         "majority": top(BabyMajority(answers).adapt(probs)),
                         "adapted": top(BabyAdaptation(answers).adapt(probs, embedding))}
                if prior is not None:
                    a, b, floor = prior[group]
                    guess["prior"] = top(AnswerPrior(answers, a, b, floor).adapt(probs))
                guesses.append(guess)
                answers.append((tag, embedding))
    return guesses


def grid_scores(outputs: dict[str, list[dict]], grid=GRID) -> tuple[list[str], np.ndarray, np.ndarray]:
    """For every guess made after at least one answer: its baby, and for each ``(a, b, floor)`` of ``grid``
    whether the count prior's top reason is the tag (hits) and its Brier score, both (guesses, len(grid))."""
    babies, hits, brier = [], [], []
    for group, rows in outputs.items():
        answers: list[tuple[str, None]] = []
        for row in rows:
            tag, probs = row["tag"], row["probs"]
            if tag not in PARENT_REASONS:
                continue
            if answers:
                babies.append(group)
                hit_row, brier_row = [], []
                for a, b, floor in grid:
                    p = AnswerPrior(answers, a, b, floor).adapt(probs)
                    hit_row.append(top(p) == tag)
                    brier_row.append(sum((v - (r == tag)) ** 2 for r, v in p.items()) + (0 if tag in p else 1))
                hits.append(hit_row)
                brier.append(brier_row)
            answers.append((tag, None))
    return babies, np.array(hits, dtype=float).reshape(-1, len(grid)), np.array(brier).reshape(-1, len(grid))


def best_in_grid(hits: np.ndarray, brier: np.ndarray, grid=GRID) -> tuple[float, float, float]:
    """The ``(a, b, floor)`` with the best accuracy over the rows given; ties: lowest Brier score, then grid order."""
    accuracy, score = hits.mean(axis=0), brier.mean(axis=0)
    return grid[min(range(len(grid)), key=lambda i: (-round(accuracy[i], 12), round(score[i], 12), i))]


def fit_prior(outputs: dict[str, list[dict]], fold_of: dict[str, int]) -> dict:
    """Cross-fitted values (baby → the ``(a, b, floor)`` fitted on the other folds' babies), each fold's values,
    and the values fitted on all babies (what the model ships with)."""
    babies, hits, brier = grid_scores(outputs)
    fold = np.array([fold_of[b] for b in babies])
    per_fold = {}
    for k in sorted(set(fold_of.values())):
        others = fold != k
        per_fold[k] = best_in_grid(hits[others], brier[others])
    return {"by_baby": {g: per_fold[fold_of[g]] for g in outputs},
            "folds": [{"fold": k, "babies": sum(1 for g in outputs if fold_of[g] == k), "a": v[0], "b": v[1],
                       "floor": v[2]} for k, v in per_fold.items()],
            "shipped": dict(zip(("a", "b", "floor"), best_in_grid(hits, brier)))}


def scores(guesses: list[dict], predictor: str) -> dict:
    index = {r: i for i, r in enumerate(PARENT_REASONS)}
    true = np.array([index[g["true"]] for g in guesses])
    pred = np.array([index[g[predictor]] for g in guesses])
    m = T.metrics(true, pred, len(PARENT_REASONS))
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def bootstrap(guesses: list[dict], predictors=PREDICTORS, pairs=(), seed: int = 0) -> dict:
    """Each predictor's accuracy and macro-F1 over ``guesses`` and each pair's ``a − b``, with 95 % intervals
    from resampling *babies* (the same draws for all: the differences are paired)."""
    rng = np.random.default_rng(seed)
    by_baby: dict[str, list[dict]] = defaultdict(list)
    for g in guesses:
        by_baby[g["baby"]].append(g)
    babies = sorted(by_baby)
    samples = {p: {"accuracy": [], "macro_f1": []} for p in predictors}
    for _ in range(BOOTSTRAP):
        drawn = [g for i in rng.integers(0, len(babies), len(babies)) for g in by_baby[babies[i]]]
        for p in predictors:
            for key, value in scores(drawn, p).items():
                samples[p][key].append(value)

    def interval(point: float, values) -> dict:
        return {"value": point, "low": float(np.percentile(values, 2.5)), "high": float(np.percentile(values, 97.5))}

    points = {p: scores(guesses, p) for p in predictors}
    return {
        "predictors": {p: {key: interval(points[p][key], samples[p][key]) for key in points[p]} for p in predictors},
        "differences": {f"{a}-{b}": {key: interval(points[a][key] - points[b][key],
                                                   np.subtract(samples[a][key], samples[b][key]))
                                     for key in points[a]} for a, b in pairs},
    }


PAIRS = (("prior", "majority"), ("adapted", "majority"), ("majority", "population"), ("prior", "population"),
         ("adapted", "population"))


def default_adaptation(differences: dict) -> str:
    """What runs by default, as a ``classifier.adaptation`` value: the learner (prior or prototypes) whose accuracy
    minus the majority's has its 95 % interval above 0 (both: the larger difference); else the majority, if its
    interval against the population model is above 0; else ``off``."""
    clears = [p for p in ("prior", "adapted") if differences[f"{p}-majority"]["accuracy"]["low"] > 0]
    if clears:
        return SETTING[max(clears, key=lambda p: differences[f"{p}-majority"]["accuracy"]["value"])]
    return "majority" if differences["majority-population"]["accuracy"]["low"] > 0 else "off"


def study(arch: str, data_dir: Path, data: dict) -> dict:
    babies = study_babies(data_dir)
    outputs, fold_of = population_outputs(arch, babies, data)
    fit = fit_prior(outputs, fold_of)
    guesses = replay(outputs, fit["by_baby"])
    buckets = []
    for low, high in BUCKETS:
        chosen = [g for g in guesses if low <= g["answers"] <= high]
        buckets.append({"answers": [low, high], "guesses": len(chosen), "babies": len({g["baby"] for g in chosen}),
                        **{p: scores(chosen, p) for p in PREDICTORS}})
    taught = [g for g in guesses if g["answers"] >= 1]
    resampled = bootstrap(taught, PREDICTORS, PAIRS)
    disagree = [g for g in taught if g["prior"] != g["majority"]]
    return {
        "arch": arch, "babies": len(babies), "clips": sum(len(c) for c in babies.values()),
        "tags": dict(Counter(c.reason for clips in babies.values() for c in clips).most_common()),
        "scored": len(guesses), "buckets": buckets,
        "taught": {"guesses": len(taught), "babies": len({g["baby"] for g in taught}), **resampled["predictors"]},
        "differences": resampled["differences"],
        "prior_and_majority_differ": {"guesses": len(disagree), **{f"{p}_right": sum(g[p] == g["true"] for g in disagree)
                                                                   for p in ("prior", "majority")}},
        "prior_fit": {"grid": {"a": sorted({g[0] for g in GRID}), "b": sorted({g[1] for g in GRID}),
                               "floor": sorted({g[2] for g in GRID})},
                      "folds": fit["folds"], "shipped": fit["shipped"]},
        "default": default_adaptation(resampled["differences"]),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default=shipped_arch(), choices=sorted(T.BACKBONES), help="default: the shipped model's")
    p.add_argument("--data", type=Path, default=T.ROOT.parent / "shared" / "data")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(study(args.arch, args.data, T.load_data(args.data)), indent=1))


if __name__ == "__main__":
    main()
