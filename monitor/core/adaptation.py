"""Learning *this* baby from the parents' answers to "Last cry was …". Three ways, each built from the answers
(``(reason, embedding)`` pairs) and each turning the population model's probabilities into this baby's with
``adapt(probs, embedding)``, the population's unchanged before any answer; ``classifier.adaptation`` picks one
(:mod:`monitor.inference.classify`), and the model card's study measured all three (``models/classifier.md``):

* :class:`BabyAdaptation` ("prototypes"): nearest class mean on the reason model's embeddings, mixed with the
  population model by how many answers there are;
* :class:`AnswerPrior` ("prior"): the answer counts as a prior on the population model;
* :class:`BabyMajority` ("majority"): the reason the parents gave most often, whatever the sound.

:class:`BabyAdaptation`'s rules (``tests/test_adaptation.py``):

* With no labels, or with an embedding of another size than the labels' (another model), the population
  probabilities pass through unchanged.
* Each labelled cry's embedding is L2-normalised; a class's prototype is the mean of its labelled embeddings. The
  baby's own distribution is ``softmax_c(cos(e, prototype_c) / TEMPERATURE)`` over the classes it has labels for.
* The two are mixed: ``p = (1 − w)·p_population + w·p_baby`` with ``w = n / (n + PRIOR_LABELS)``: the baby's
  model counts as much as the population model after PRIOR_LABELS answers and dominates after many.
* Reasons the population model does not know (the parents may answer "lonely", "scared", "cold_hot", as in the
  Donate-a-cry app) enter with their mixed probability; the probabilities still sum to 1.
* With a single labelled class the baby's distribution is all on it: the adaptation then leans towards the
  baby's usual reason, like the baby's own majority would.

The two constants were fixed before the study on the raw Donate-a-cry uploads (``models/classifier.md``), not
tuned on it: that study is the only per-baby data we have, and it is what decides whether this is on by default.

Example:
    >>> model = BabyAdaptation([("tired", np.array([1.0, 0.0])), ("tired", np.array([0.9, 0.1]))])
    >>> probs = model.adapt({"hungry": 0.8, "tired": 0.2}, np.array([1.0, 0.05]))
    >>> round(probs["tired"], 2), round(sum(probs.values()), 6)
    (0.6, 1.0)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

PRIOR_LABELS = 2.0  # answers at which the baby's own model weighs as much as the population's
TEMPERATURE = 0.1  # of the cosine-similarity softmax over the baby's prototypes
# AnswerPrior's exponents and floor for a model whose manifest entry has none: the values fitted for the shipped
# model (models/classifier.md), whose entry carries them too
PRIOR_A, PRIOR_B, PRIOR_FLOOR = 0.25, 4.0, 0.01


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64).ravel()
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


class BabyAdaptation:
    """The baby's prototypes from ``(reason, embedding)`` labels; :meth:`adapt` mixes them into a prediction."""

    def __init__(self, labels: Iterable[tuple[str, np.ndarray]]) -> None:
        by_class: dict[str, list[np.ndarray]] = {}
        for reason, embedding in labels:
            by_class.setdefault(reason, []).append(_unit(embedding))
        self.count = sum(len(v) for v in by_class.values())
        self.classes = tuple(sorted(by_class))
        self.prototypes = np.stack([_unit(np.mean(by_class[c], axis=0)) for c in self.classes]) if by_class else None

    @property
    def weight(self) -> float:
        """How much the baby's own model counts, ``n / (n + PRIOR_LABELS)``."""
        return self.count / (self.count + PRIOR_LABELS)

    def own(self, embedding: np.ndarray) -> dict[str, float]:
        """The baby's own distribution over the classes it has labels for (empty without labels)."""
        if self.prototypes is None:
            return {}
        scores = self.prototypes @ _unit(embedding) / TEMPERATURE
        scores = np.exp(scores - scores.max())
        return dict(zip(self.classes, (scores / scores.sum()).tolist()))

    def adapt(self, probs: Mapping[str, float], embedding: np.ndarray) -> dict[str, float]:
        """Population ``probs`` mixed with the baby's own distribution (unchanged without labels)."""
        if self.prototypes is None or np.size(embedding) != self.prototypes.shape[1]:
            return dict(probs)  # no answers, or answers from a model with other embeddings
        own, w = self.own(embedding), self.weight
        return {c: (1 - w) * probs.get(c, 0.0) + w * own.get(c, 0.0) for c in (*probs, *(c for c in own if c not in probs))}


class AnswerPrior:
    """The baby's answer counts as a prior on the population model (the count prior):
    ``p(r) ∝ p_model(r)^a · (count(r) + 1)^b``.

    Rules (``tests/test_adaptation.py``):

    * With no answers the population probabilities pass through unchanged (``a`` only weighs the model against
      the answers; it does not recalibrate the model on its own).
    * The reasons are the model's classes and the reasons the parents gave; a reason that no one gave and the
      model does not know is absent, as with :class:`BabyAdaptation`.
    * A reason only the parents know (``cold_hot``, ``lonely``, ``scared``: the population model gives it no
      probability) enters with ``p_model = floor``, a constant fitted with ``a`` and ``b``, so that, as for the
      baby's majority, enough answers of it make it the guess; without that floor ``0^a`` would bar it forever.
    * Answers only count; their embeddings (and so the model that heard the cry) play no part.
    * The probabilities sum to 1. Only the ratio ``b / a`` moves the top reason; ``a`` also sets how sharp the
      probabilities are. ``b = 0`` is the population model's guess; a large ``b / a`` is the baby's majority,
      with ties broken by the sound.

    ``a``, ``b`` and ``floor`` are fitted for each model by its adaptation study (leave-babies-out cross-validation
    on the raw Donate-a-cry uploads, ``monitor/training/adaptation_study.py``) and stored in its manifest entry
    (``answer_prior``); :data:`PRIOR_A`, :data:`PRIOR_B` and :data:`PRIOR_FLOOR` serve a model without them.

    Example:
        >>> prior = AnswerPrior([("tired", None), ("tired", None)], a=1.0, b=1.0, floor=0.05)
        >>> probs = prior.adapt({"hungry": 0.6, "tired": 0.4})
        >>> round(probs["tired"], 3), round(sum(probs.values()), 6)   # 0.4·3 against 0.6·1
        (0.667, 1.0)
        >>> AnswerPrior([]).adapt({"hungry": 0.6, "tired": 0.4})
        {'hungry': 0.6, 'tired': 0.4}
    """

    def __init__(self, labels: Iterable[tuple[str, object]], a: float | None = None, b: float | None = None,
                 floor: float | None = None) -> None:
        self.a = PRIOR_A if a is None else float(a)
        self.b = PRIOR_B if b is None else float(b)
        self.floor = PRIOR_FLOOR if floor is None else float(floor)
        if self.a < 0 or self.b < 0 or not 0 < self.floor <= 1:
            raise ValueError(f"need a >= 0, b >= 0 and 0 < floor <= 1, got a={a}, b={b}, floor={floor}")
        self.counts = Counter(reason for reason, _ in labels)
        self.count = sum(self.counts.values())
        self.classes = tuple(sorted(self.counts))

    def adapt(self, probs: Mapping[str, float], embedding: np.ndarray | None = None) -> dict[str, float]:
        """``probs`` with the answer counts as a prior (unchanged without answers); ``embedding`` is not used."""
        if not self.count:
            return dict(probs)
        reasons = (*probs, *(r for r in self.classes if r not in probs))
        model = np.array([probs[r] if r in probs else self.floor for r in reasons], dtype=np.float64)
        counts = np.array([self.counts.get(r, 0) for r in reasons], dtype=np.float64)
        with np.errstate(divide="ignore"):  # a model probability of exactly 0 stays 0 (for a > 0)
            score = self.a * np.log(model) if self.a else np.zeros_like(model)
        score = score + self.b * np.log1p(counts)
        score = np.exp(score - score.max())
        return dict(zip(reasons, (score / score.sum()).tolist()))


class BabyMajority:
    """The baby's own majority so far: the reason its parents gave most often, whatever the sound.

    Rules (``tests/test_adaptation.py``):

    * With no answers the population probabilities pass through unchanged.
    * With answers, each reason's probability is its share of the answers (the model's classes no one gave
      stay, at 0), so the top reason is the one given most often; of reasons given equally often, the one given
      first comes first in the probabilities and so wins ``max``.
    * Answers only count; their embeddings play no part.

    Example:
        >>> majority = BabyMajority([("tired", None), ("lonely", None), ("lonely", None)])
        >>> probs = majority.adapt({"hungry": 0.9, "tired": 0.1})
        >>> max(probs, key=probs.get), round(probs["lonely"], 3), probs["hungry"]
        ('lonely', 0.667, 0.0)
    """

    def __init__(self, labels: Iterable[tuple[str, object]]) -> None:
        reasons = [reason for reason, _ in labels]
        self.counts = Counter(reasons)
        self.count = len(reasons)
        self.classes = tuple(sorted(self.counts))
        self.first_given = tuple(dict.fromkeys(reasons))

    def adapt(self, probs: Mapping[str, float], embedding: np.ndarray | None = None) -> dict[str, float]:
        """The answers' shares (``probs`` unchanged without answers); ``embedding`` is not used."""
        if not self.count:
            return dict(probs)
        ranked = sorted(self.first_given, key=lambda r: -self.counts[r])  # stable: ties keep the order given
        return {**{r: self.counts[r] / self.count for r in ranked}, **{r: 0.0 for r in probs if r not in self.counts}}
