"""The per-baby learners' rules (monitor/core/adaptation.py: prototypes, the count prior, the majority), the baby's
metadata (monitor/core/baby.py) and the study's bookkeeping (monitor/training/adaptation_study.py): pure functions,
no model."""

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from monitor.core.adaptation import PRIOR_LABELS, AnswerPrior, BabyAdaptation, BabyMajority
from monitor.core.baby import METADATA_SIZE, age_band, metadata_vector
from monitor.core.events import PARENT_REASONS
from monitor.training.adaptation_study import (best_in_grid, bootstrap, default_adaptation, fit_prior, grid_scores,
                                               replay, scores, upload_time)

POPULATION = {"belly_pain": 0.1, "burping": 0.1, "discomfort": 0.1, "hungry": 0.6, "tired": 0.1}


def test_without_answers_the_population_probabilities_pass_unchanged():
    assert BabyAdaptation([]).adapt(POPULATION, np.ones(4)) == POPULATION
    assert BabyAdaptation([]).weight == 0.0


def test_the_baby_weighs_as_much_as_the_population_after_prior_labels_answers():
    labels = [("tired", np.array([1.0, 0.0]))] * int(PRIOR_LABELS)
    assert BabyAdaptation(labels).weight == pytest.approx(0.5)
    assert BabyAdaptation(labels * 10).weight > 0.9


def test_the_nearest_prototype_wins_and_probabilities_sum_to_one():
    model = BabyAdaptation([("tired", np.array([1.0, 0.0])), ("hungry", np.array([0.0, 1.0])),
                            ("tired", np.array([0.9, 0.2]))] * 3)
    near_tired = model.adapt(POPULATION, np.array([1.0, 0.1]))
    near_hungry = model.adapt(POPULATION, np.array([0.1, 1.0]))
    assert max(near_tired, key=near_tired.get) == "tired" and max(near_hungry, key=near_hungry.get) == "hungry"
    for probs in (near_tired, near_hungry):
        assert sum(probs.values()) == pytest.approx(1.0)


def test_a_reason_the_population_model_never_learned_can_be_learned():
    model = BabyAdaptation([("lonely", np.array([0.0, 1.0]))] * 6)
    probs = model.adapt(POPULATION, np.array([0.0, 1.0]))
    assert set(probs) == {*POPULATION, "lonely"} and max(probs, key=probs.get) == "lonely"
    assert sum(probs.values()) == pytest.approx(1.0)


def test_embeddings_are_compared_by_direction_not_length():
    model = BabyAdaptation([("tired", np.array([10.0, 0.0])), ("hungry", np.array([0.0, 0.1]))])
    assert model.own(np.array([0.01, 0.0]))["tired"] > 0.99


@pytest.mark.parametrize("born, on, band", [
    (date(2026, 11, 5), date(2026, 12, 2), "0-4w"),   # 27 days
    (date(2026, 11, 4), date(2026, 12, 2), "4-8w"),   # 28 days
    (date(2026, 10, 7), date(2026, 12, 2), "2-6m"),   # 56 days
    (date(2026, 5, 3), date(2026, 12, 2), "2-6m"),    # 6 months 29 days
    (date(2026, 5, 2), date(2026, 12, 2), "7m-2y"),   # 7 months
    (date(2024, 12, 3), date(2026, 12, 2), "7m-2y"),  # a day short of 2 years
    (date(2024, 12, 2), date(2026, 12, 2), "2y+"),
])
def test_age_band_from_the_birth_date_on_the_day(born, on, band):
    assert age_band(born, on) == band


def test_metadata_vector_is_one_hot_and_unknown_is_zeros():
    assert metadata_vector("m", "2y+").tolist() == [1, 0, 0, 0, 0, 0, 1]
    assert metadata_vector(None, "0-4w").tolist() == [0, 0, 1, 0, 0, 0, 0]
    assert metadata_vector(None, None).shape == (METADATA_SIZE,) and not metadata_vector(None, None).any()
    with pytest.raises(ValueError):
        age_band(date(2026, 12, 3), date(2026, 12, 2))


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


# ---------------------------------------------------------------- the count prior and the majority

def answers(*reasons: str) -> list[tuple[str, None]]:
    return [(r, None) for r in reasons]


@pytest.mark.parametrize("a, b, floor", [(1.0, 1.0, 0.05), (0.25, 8.0, 0.01), (2.0, 0.5, 0.2)])
def test_before_any_answer_the_prior_is_the_population_model(a, b, floor):
    assert AnswerPrior([], a, b, floor).adapt(POPULATION) == POPULATION
    assert AnswerPrior([], a, b, floor).count == 0


def test_the_prior_is_the_model_to_the_a_times_the_counts_plus_one_to_the_b():
    probs = AnswerPrior(answers("tired", "tired", "hungry"), a=0.5, b=2.0, floor=0.05).adapt(POPULATION)
    raw = {r: p ** 0.5 * ({"tired": 3, "hungry": 2}.get(r, 1)) ** 2.0 for r, p in POPULATION.items()}
    assert probs == pytest.approx({r: v / sum(raw.values()) for r, v in raw.items()})
    assert sum(probs.values()) == pytest.approx(1.0)


def test_a_reason_only_the_parents_know_enters_at_the_floor_and_enough_answers_make_it_the_guess():
    once = AnswerPrior(answers("lonely"), a=1.0, b=1.0, floor=0.05).adapt(POPULATION)
    assert set(once) == {*POPULATION, "lonely"}
    assert once["lonely"] == pytest.approx(0.05 * 2 / (1.0 + 0.05 * 2))  # the model's five sum to 1, times 1
    assert max(once, key=once.get) == "hungry"
    often = AnswerPrior(answers(*["lonely"] * 11), a=1.0, b=1.0, floor=0.05).adapt(POPULATION)
    assert max(often, key=often.get) == "lonely" and sum(often.values()) == pytest.approx(1.0)


def test_reasons_no_one_gave_that_the_model_does_not_know_are_absent():
    probs = AnswerPrior(answers("tired", "scared"), 1.0, 1.0, 0.05).adapt(POPULATION)
    assert set(probs) == {*POPULATION, "scared"} and set(probs) <= set(PARENT_REASONS)


def test_b_zero_is_the_population_guess_and_a_large_b_over_a_the_majority():
    labels = answers("tired", "burping", "tired")
    flat = AnswerPrior(labels, a=1.0, b=0.0, floor=0.05).adapt(POPULATION)
    assert flat == pytest.approx(POPULATION)
    steep = AnswerPrior(labels, a=0.25, b=8.0, floor=0.05).adapt(POPULATION)
    assert max(steep, key=steep.get) == "tired" and steep["tired"] > 0.95  # (4/3)^8 = 10 against burping


def test_only_b_over_a_moves_the_top_reason_a_sets_the_sharpness():
    labels = answers("tired")
    soft = AnswerPrior(labels, a=0.5, b=0.5, floor=0.05).adapt(POPULATION)
    sharp = AnswerPrior(labels, a=2.0, b=2.0, floor=0.05).adapt(POPULATION)
    assert max(soft, key=soft.get) == max(sharp, key=sharp.get) == "hungry"  # 0.6 against 0.1 · 2
    assert sharp["hungry"] > soft["hungry"]


def test_the_prior_counts_answers_whatever_their_embedding():
    mixed = [("tired", np.ones(3)), ("tired", np.ones(7)), ("hungry", None)]
    assert AnswerPrior(mixed, 1.0, 1.0, 0.05).adapt(POPULATION, np.ones(5)) == \
        AnswerPrior(answers("tired", "tired", "hungry"), 1.0, 1.0, 0.05).adapt(POPULATION)


@pytest.mark.parametrize("a, b, floor", [(-1.0, 1.0, 0.05), (1.0, -0.1, 0.05), (1.0, 1.0, 0.0), (1.0, 1.0, 1.5)])
def test_the_prior_refuses_values_outside_its_ranges(a, b, floor):
    with pytest.raises(ValueError):
        AnswerPrior([], a, b, floor)


def test_the_majority_is_the_answers_shares_and_ties_go_to_the_answer_given_first():
    assert BabyMajority([]).adapt(POPULATION) == POPULATION
    probs = BabyMajority(answers("burping", "tired", "lonely", "tired", "burping")).adapt(POPULATION, np.ones(2))
    assert max(probs, key=probs.get) == "burping"  # two each: burping was given first
    assert probs == pytest.approx({"burping": 0.4, "tired": 0.4, "lonely": 0.2, "belly_pain": 0.0,
                                   "discomfort": 0.0, "hungry": 0.0})
    assert sum(probs.values()) == pytest.approx(1.0)


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


def test_the_tool_rewrites_only_the_cards_section_on_the_study_and_says_what_runs(tmp_path):
    from monitor.training.adaptation_study import PAIRS, PREDICTORS
    from monitor.training.reason_table import ADAPTATION_HEADING, rewrite_adaptation_section

    guesses = [{"baby": f"b{i}", "answers": 1, "true": "tired", "population": "hungry", "majority": "tired",
                "adapted": "tired" if i % 2 else "hungry", "prior": "tired" if i % 3 else "hungry"} for i in range(12)]
    resampled = bootstrap(guesses, PREDICTORS, PAIRS)
    folds = [{"fold": k, "babies": 3, "a": 0.25, "b": 4.0, "floor": 0.01} for k in range(4)]
    study = {"arch": "cnn14-mha", "babies": 12, "clips": 20, "tags": {"tired": 12, "unknown": 8}, "scored": 12,
             "buckets": [{"answers": [1, 2], "guesses": 12, "babies": 12, **{p: scores(guesses, p) for p in PREDICTORS}}],
             "taught": {"guesses": 12, "babies": 12, **resampled["predictors"]}, "differences": resampled["differences"],
             "prior_and_majority_differ": {"guesses": 4, "prior_right": 0, "majority_right": 4},
             "prior_fit": {"grid": {"a": [0.25], "b": [4.0], "floor": [0.01]}, "folds": folds,
                           "shipped": {"a": 0.25, "b": 4.0, "floor": 0.01}},
             "default": default_adaptation(resampled["differences"])}
    card = tmp_path / "classifier.md"
    card.write_text(f"# Card\n\nbefore\n\n{ADAPTATION_HEADING}\nold numbers\n\n## Limits\nafter\n")
    rewrite_adaptation_section(card, study)
    text = card.read_text()
    assert text.startswith("# Card\n\nbefore\n\n" + ADAPTATION_HEADING) and text.endswith("\n\n## Limits\nafter\n")
    assert "old numbers" not in text and study["default"] == "majority"  # everyone else is right less often
    assert "Verdict: **`majority`** runs by default" in text and "| count prior | `prior` | 0.667 (" in text
    assert "a = 0.25, b = 4,\nfloor = 0.01" in text and "differ on 4 of the 12 guesses" in text
