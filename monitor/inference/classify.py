"""Classify: why is the baby crying. Audio of one cry → :class:`~monitor.core.events.Reason` (a class or
``uncertain``, calibrated probabilities). When a cry's audio is classified is :mod:`monitor.core.schedule`'s.

Training (``tools/train_classifier.py``) and inference share :func:`prepare`: the shared log-mel, silence
trimmed at both ends, centre-cropped to at most :data:`MAX_FRAMES`. The model runs in the runtime its file names:
a ``.pt`` in torch (:mod:`monitor.inference.torch_runtime`), a ``.onnx`` export in ONNX Runtime without torch
(:mod:`monitor.inference.onnx_runtime`); either way the log-mel is :func:`monitor.inference.features.logmel`'s.

Decision: below ``min_confidence`` the published reason is ``uncertain`` (probabilities are still published): with
  84 % of the training cries labelled "hungry", a hesitant model would otherwise just say "hungry". Not ``unknown``:
  Home Assistant reads that as "no data".

The baby's sex and age band (``classifier.baby``; the age derived on the day of the cry) go to a model that uses
them; any other model ignores them, and an unknown field is simply absent. Once the parents have answered
"Last cry was …" (:mod:`monitor.service.feedback` stores the answers and calls :meth:`ReasonClassifier.teach`),
``classifier.adaptation`` turns the probabilities into this baby's (:mod:`monitor.core.adaptation`): ``prior``
(the answer counts as a prior, with the values fitted for this model in its manifest entry), ``majority`` (the
answers' shares), ``prototypes`` (mixed with the answers' embeddings; only answers to this model's embeddings
count) or ``off``; ``auto`` is the model's own study's choice. The probabilities sum to 1 and may name a reason
only the parents gave.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

import numpy as np
import structlog

from monitor import SAMPLE_RATE
from monitor.config import ClassifierConfig, Config
from monitor.core.adaptation import AnswerPrior, BabyAdaptation, BabyMajority
from monitor.core.baby import age_band, metadata_vector
from monitor.core.events import UNCERTAIN, Reason
from monitor.core.schedule import reasons_enabled
from monitor.inference.features import logmel
from monitor.inference.runtime import open_model

log = structlog.get_logger(__name__)

MAX_FRAMES = 401  # 4 s: the evaluation crop in training and the most the classifier looks at
MIN_FRAMES = 50  # shorter (trimmed) audio is tiled up to this, so every backbone gets a usable length
TRIM_DB = 30.0


def adaptation_setting(configured: bool | str, studied: str | None) -> str:
    """The learner that runs: ``classifier.adaptation`` with ``auto`` read from the model's study (``off`` for a
    model never studied) and the older ``true`` / ``false`` as ``prototypes`` / ``off``.

    >>> adaptation_setting("auto", "majority"), adaptation_setting(True, "majority"), adaptation_setting("auto", None)
    ('majority', 'prototypes', 'off')
    """
    if configured == "auto":
        return studied or "off"
    if isinstance(configured, bool):
        return "prototypes" if configured else "off"
    return configured


def trim_silence(frames: np.ndarray, floor_db: float = TRIM_DB) -> np.ndarray:
    """Drop leading and trailing log-mel frames (T, mels) more than ``floor_db`` below the loudest frame."""
    energy = frames.mean(axis=-1)
    loud = np.flatnonzero(energy >= energy.max() - floor_db)
    return frames[loud[0] : loud[-1] + 1] if loud.size else frames


def prepare(frames: np.ndarray, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """Silence-trimmed, centre-cropped (or tiled up to MIN_FRAMES) log-mel of one cry, (T, mels).

    Example:
        >>> prepare(np.full((7, 64), -20.0, np.float32)).shape
        (50, 64)
    """
    x = trim_silence(frames)
    if x.shape[0] < MIN_FRAMES:
        x = np.tile(x, (-(-MIN_FRAMES // x.shape[0]), 1))[:MIN_FRAMES]
    start = max(0, (x.shape[0] - max_frames) // 2)
    return x[start : start + max_frames]


def make_classifier(config: Config) -> ReasonClassifier | None:
    """The reason classifier, or None where reasons are off (:func:`monitor.core.schedule.reasons_enabled`): the one
    place that decides, for the daemon, replay and the pipeline they build."""
    return ReasonClassifier(config.classifier) if reasons_enabled(config) else None


class ReasonClassifier:
    """``classify(samples) -> Reason`` with the configured model (``models/classifier.onnx`` by default; a ``.pt``
    runs in torch, on CUDA under fp16 autocast) on the configured device. :attr:`learner` is the configured
    ``classifier.adaptation`` resolved (:func:`adaptation_setting`); :attr:`adaptation` holds what it learned from
    the answers (:meth:`teach`, called by the feedback store; with ``off``, the prototypes it would use);
    :attr:`adapting` says whether it is used."""

    def __init__(self, config: ClassifierConfig) -> None:
        self.runtime = open_model(config.model, "classifier", config.device)
        self.device = self.runtime.device
        self.model_id = self.runtime.entry.sha256[:12]
        # whose embeddings: the weights' (an ONNX export's are its source's), what stored answers are matched by
        self.embedding_space = self.runtime.entry.kwargs.get("source_sha256", self.runtime.entry.sha256)[:12]
        self.classes = self.runtime.classes
        self.min_confidence = config.min_confidence
        self.baby = config.baby
        # auto: the model card's decision, in the model's manifest entry (an export's copied from its source)
        self.learner = adaptation_setting(config.adaptation, self.runtime.entry.adaptation)
        self.adapting = self.learner != "off"
        self.answer_prior = dict(self.runtime.entry.answer_prior or {})  # none: AnswerPrior's defaults
        self.adaptation = BabyAdaptation([])

    def teach(self, labels: Iterable[Mapping]) -> None:
        """Learn from the parents' stored answers (``reason``, ``embedding``, ``model``: whose embedding). The
        prior and the majority count every answer (a reason is the parents' whatever model heard the cry); the
        prototypes use only those of this model's embeddings (another model's live in another space)."""
        if self.learner == "prior":
            self.adaptation = AnswerPrior(((item["reason"], None) for item in labels), **self.answer_prior)
        elif self.learner == "majority":
            self.adaptation = BabyMajority((item["reason"], None) for item in labels)
        else:
            self.adaptation = BabyAdaptation((item["reason"], np.asarray(item["embedding"]))
                                             for item in labels if item["model"] == self.embedding_space)

    def metadata(self, on: date | None = None) -> np.ndarray:
        """The baby's metadata vector on the day ``on`` (today); a birth date after it counts as not told."""
        born, on = self.baby.birth_date, on or date.today()
        if born is not None and born > on:
            log.warning("birth_date_in_the_future", birth_date=str(born), today=str(on), detail="age not used")
            born = None
        return metadata_vector(self.baby.sex, age_band(born, on) if born else None)

    def classify(self, samples: np.ndarray) -> Reason:
        if samples.size < SAMPLE_RATE // 10:
            raise ValueError(f"need at least 0.1 s of audio to classify, got {samples.size} samples")
        logits, embedding = self.runtime.run(prepare(logmel(samples)), self.metadata())
        logits = logits.astype(np.float64)
        exp = np.exp(logits - logits.max())
        probs = {c: float(p) for c, p in zip(self.classes, exp / exp.sum())}
        if self.adapting:
            probs = self.adaptation.adapt(probs, embedding)
        best = max(probs, key=probs.get)
        confidence = probs[best]
        reason = best if confidence >= self.min_confidence else UNCERTAIN
        return Reason(reason, confidence, probs, tuple(float(v) for v in embedding))
