"""The adaptation study's bookkeeping (monitor/training/adaptation_study.py): upload times, the replayed guesses,
the fitted prior, the intervals and the default it chooses. Pure functions, no model."""

from pathlib import Path

import numpy as np
import pytest

from conftest import POPULATION, answers
from monitor.core.adaptation import AnswerPrior
from monitor.training.adaptation_study import (best_in_grid, bootstrap, default_adaptation, fit_prior, grid_scores,
                                               replay, scores, upload_time)


def test_upload_time_reads_android_milliseconds_ios_seconds_and_fractions():
    uuid = "0d8ed1a5-2f9c-4c4b-9a4b-2f2f3c1e2a11"
    assert upload_time(Path(f"{uuid}-1430218353124-1.7-f-26-hu.ogg")) == pytest.approx(1430218353.124)
    assert upload_time(Path(f"{uuid.upper()}-1430138495-1.0-m-72-bp.ogg")) == 1430138495
    assert upload_time(Path(f"{uuid.upper()}-1426957748.47029-1-0911C8F7-f-26-ti.ogg")) == 1426957748


def test_replay_guesses_before_learning_and_skips_dont_know():
    e = [1.0, 0.0]
    rows = [{"tag": t, "probs": POPULATION, "embedding": e} for t in ("tired", "unknown", "tired", "hungry", "hungry")]
    guesses = replay({"baby": rows})
    assert [g["answers"] for g in guesses] == [0, 1, 2, 3]  # "unknown" neither scored nor counted
    assert [g["majority"] for g in guesses] == ["hungry", "tired", "tired", "tired"]  # before any answer: population
    assert [g["population"] for g in guesses] == ["hungry"] * 4
    # right once in four; F1 tired 0.4 (P 1/3, R 1/2), hungry 0
    assert scores(guesses, "majority") == {"accuracy": 0.25, "macro_f1": pytest.approx(0.2)}


def test_majority_ties_go_to_the_answer_given_first():
    rows = [{"tag": t, "probs": POPULATION, "embedding": [1.0, 0.0]} for t in ("burping", "tired", "tired", "burping", "x")]
    rows[-1]["tag"] = "tired"
    assert [g["majority"] for g in replay({"b": rows})][1:] == ["burping", "burping", "tired", "burping"]


# ---------------------------------------------------------------- fitting the prior, the intervals, the default

def baby(tags, probs=POPULATION):
    return [{"tag": t, "probs": probs, "embedding": [1.0, 0.0]} for t in tags]


def test_the_grid_prefers_accuracy_then_the_brier_score_then_its_order():
    grid = ((1.0, 0.0, 0.05), (1.0, 1.0, 0.05), (2.0, 2.0, 0.05), (1.0, 4.0, 0.05))
    hits = np.array([[0, 1, 1, 1], [1, 1, 1, 0]], float)
    assert best_in_grid(hits, np.array([[1, 0.5, 0.4, 0.1], [0, 0.5, 0.4, 0.9]]), grid) == grid[2]  # Brier
    assert best_in_grid(hits, np.array([[1, 0.5, 0.5, 0.1], [0, 0.5, 0.5, 0.9]]), grid) == grid[1]  # order


def test_the_prior_is_fitted_on_the_other_folds_babies_only():
    # fold 0's babies always repeat their first answer (the counts win); fold 1's always cry "hungry" after
    # another answer (the model wins): each fold gets values that suit the *other* fold
    outputs = {"r0": baby(["tired", "tired", "tired"]), "r1": baby(["burping", "burping", "burping"]),
               "m0": baby(["tired", "hungry", "hungry"]), "m1": baby(["belly_pain", "hungry"])}
    fold_of = {"r0": 0, "r1": 0, "m0": 1, "m1": 1}
    fit = fit_prior(outputs, fold_of)
    counts_win = AnswerPrior(answers("tired"), *fit["by_baby"]["m0"]).adapt(POPULATION)
    model_wins = AnswerPrior(answers("tired"), *fit["by_baby"]["r0"]).adapt(POPULATION)
    assert max(counts_win, key=counts_win.get) == "tired"  # m0 (fold 1) got fold 0's values
    assert max(model_wins, key=model_wins.get) == "hungry"  # r0 (fold 0) got fold 1's values
    babies, hits, _ = grid_scores(outputs)
    assert babies == ["r0", "r0", "r1", "r1", "m0", "m0", "m1"] and hits.shape[0] == 7
    assert [f["babies"] for f in fit["folds"]] == [2, 2]


def test_the_replayed_prior_guesses_with_its_babys_values():
    rows = baby(["tired", "tired", "lonely", "lonely", "lonely", "lonely"])
    steep = replay({"b": rows}, {"b": (0.25, 8.0, 0.05)})
    flat = replay({"b": rows}, {"b": (1.0, 0.0, 0.05)})
    # two each after the fifth: the sound breaks the tie (tired 0.1 against lonely's floor 0.05)
    assert [g["prior"] for g in steep] == ["hungry", "tired", "tired", "tired", "tired", "lonely"]
    assert [g["prior"] for g in flat] == ["hungry"] * 6 == [g["population"] for g in flat]


def test_the_intervals_resample_babies_and_pair_the_differences():
    guesses = [{"baby": b, "true": "tired", "p": "tired" if b < 5 else "hungry", "q": "tired"} for b in range(10)
               for _ in range(1 + b)]
    out = bootstrap(guesses, ("p", "q"), (("p", "q"), ("q", "q")))
    assert out["predictors"]["q"]["accuracy"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    p = out["predictors"]["p"]["accuracy"]
    assert p["value"] == pytest.approx(15 / 55) and 0 < p["low"] < p["value"] < p["high"] < 1
    assert out["differences"]["q-q"]["accuracy"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    assert out["differences"]["p-q"]["accuracy"]["high"] == pytest.approx(p["high"] - 1)


def interval(value, low, high):
    return {"accuracy": {"value": value, "low": low, "high": high}}


@pytest.mark.parametrize("prior, adapted, majority, expected", [
    ((0.05, 0.01, 0.1), (-0.05, -0.1, 0.0), (0.3, 0.2, 0.4), "prior"),
    ((0.05, 0.01, 0.1), (0.08, 0.02, 0.1), (0.3, 0.2, 0.4), "prototypes"),
    ((0.02, -0.01, 0.05), (-0.05, -0.1, 0.0), (0.3, 0.2, 0.4), "majority"),
    ((0.02, -0.01, 0.05), (-0.05, -0.1, 0.0), (0.03, -0.02, 0.1), "off"),
])
def test_the_default_is_a_learner_that_clears_the_majority_else_the_majority_if_it_clears_the_model(
        prior, adapted, majority, expected):
    differences = {"prior-majority": interval(*prior), "adapted-majority": interval(*adapted),
                   "majority-population": interval(*majority)}
    assert default_adaptation(differences) == expected
