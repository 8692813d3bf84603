"""The per-baby learners' rules (monitor/core/adaptation.py: prototypes, the count prior, the majority): pure
functions, no model."""

import numpy as np
import pytest

from conftest import POPULATION, answers
from monitor.core.adaptation import PRIOR_LABELS, AnswerPrior, BabyAdaptation, BabyMajority
from monitor.core.events import PARENT_REASONS


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


# ---------------------------------------------------------------- the count prior and the majority

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
