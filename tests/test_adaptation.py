"""The per-baby adaptation's rules (monitor/core/adaptation.py), the baby's metadata (monitor/core/baby.py) and the
study's bookkeeping (monitor/training/adaptation_study.py): pure functions, no model."""

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from monitor.core.adaptation import PRIOR_LABELS, BabyAdaptation
from monitor.core.baby import METADATA_SIZE, age_band, metadata_vector
from monitor.training.adaptation_study import replay, scores, upload_time

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
