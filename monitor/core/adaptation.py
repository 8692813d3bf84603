"""Learning *this* baby from the parents' answers to "Last cry was …": nearest class mean on the reason model's
embeddings, mixed with the population model by how many answers there are.

Rules (``tests/test_adaptation.py``):

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

from collections.abc import Iterable, Mapping

import numpy as np

PRIOR_LABELS = 2.0  # answers at which the baby's own model weighs as much as the population's
TEMPERATURE = 0.1  # of the cosine-similarity softmax over the baby's prototypes


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
