"""Classify: why is the baby crying. Audio of one cry → :class:`Reason` (a class or ``unknown``, calibrated
probabilities), plus the pure schedule that decides when a cry's audio is classified.

Training (``tools/train_classifier.py``) and inference share :func:`prepare`: the shared log-mel, silence
trimmed at both ends, centre-cropped to at most :data:`MAX_FRAMES`. The model runs in the runtime its file names:
a ``.pt`` in torch (:mod:`monitor.torch_runtime`), a ``.onnx`` export in ONNX Runtime without torch
(:mod:`monitor.onnx_runtime`); either way the log-mel is :func:`monitor.features.logmel`'s.

Decisions:
- A cry is classified ``at_seconds`` after its ``cry_start`` (default 2 s, then 6 s), each time on the audio
  from ``lookback_seconds`` before the start up to that moment, so a first answer comes quickly and a second,
  on more audio, refines it. A later ``cry_reason`` for the same id supersedes the earlier one. A cry that ends
  before its first time is classified at its end.
- Below ``min_confidence`` the published reason is ``unknown`` (probabilities are still published): with 84 %
  of the training cries labelled "hungry", a hesitant model would otherwise just say "hungry".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from monitor import SAMPLE_RATE
from monitor.config import ClassifierConfig, Config
from monitor.features import logmel
from monitor.weights import open_model


def reasons_enabled(config: Config) -> bool:
    """Reasons are classified for cries from the CNN10 detector; loudness mode fires on any sound, and a
    "reason" for a slammed door would be noise."""
    return config.classifier.enabled and config.detector.kind == "cnn10"


MAX_FRAMES = 401  # 4 s: the evaluation crop in training and the most the classifier looks at
MIN_FRAMES = 50  # shorter (trimmed) audio is tiled up to this, so every backbone gets a usable length
TRIM_DB = 30.0


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


@dataclass(frozen=True)
class Reason:
    reason: str  # one of the classes, or "unknown" below the confidence threshold
    confidence: float  # calibrated probability of the most likely class
    probs: dict[str, float]


@dataclass(frozen=True)
class ReasonEvent:
    """A ``cry_reason`` event: the reason of cry ``id`` from the audio seen up to ``t``."""

    t: float
    id: str
    reason: Reason
    audio_s: float
    type: str = "cry_reason"

    def to_dict(self) -> dict:
        return {"type": self.type, "t": round(self.t, 3), "id": self.id, "reason": self.reason.reason,
                "confidence": round(self.reason.confidence, 4),
                "probs": {k: round(v, 4) for k, v in self.reason.probs.items()}, "audio_s": round(self.audio_s, 2)}


@dataclass(frozen=True)
class ClassifyRequest:
    """Audio of an open (or just ended) cry to classify, taken from the ring buffer at audio time ``t``."""

    id: str
    t: float
    samples: np.ndarray


@dataclass
class ReasonSchedule:
    """Pure: when is which cry due for classification. Feed it the state machine's events and the audio clock."""

    at_seconds: Sequence[float]
    lookback_seconds: float
    _open: tuple[str, float] | None = None
    _done: int = 0
    _due: list[tuple[str, float, float]] = field(default_factory=list)

    def on_event(self, type_: str, cry_id: str, t: float) -> None:
        if type_ == "cry_start":
            self._open, self._done = (cry_id, t), 0
        elif type_ == "cry_end" and self._open is not None:
            if self._done == 0:  # a short cry still gets one answer
                self._due.append((cry_id, self._open[1] - self.lookback_seconds, t))
            self._open = None

    def on_time(self, t: float) -> None:
        if self._open is None or self._done >= len(self.at_seconds):
            return
        cry_id, start = self._open
        if t - start >= self.at_seconds[self._done]:
            self._due.append((cry_id, start - self.lookback_seconds, t))
            while self._done < len(self.at_seconds) and t - start >= self.at_seconds[self._done]:
                self._done += 1  # a late clock (a big chunk) makes one request, not several

    def take(self) -> list[tuple[str, float, float]]:
        """Due requests as (cry id, audio start, audio end) in seconds; each is returned once."""
        due, self._due = self._due, []
        return due


class ReasonClassifier:
    """``classify(samples) -> Reason`` with the configured model (``models/classifier.onnx`` by default; a ``.pt``
    runs in torch, on CUDA under fp16 autocast) on the configured device."""

    def __init__(self, config: ClassifierConfig) -> None:
        self.runtime = open_model(config.model, "classifier", config.device)
        self.device = self.runtime.device
        self.model_id = self.runtime.entry.sha256[:12]
        self.classes = self.runtime.classes
        self.min_confidence = config.min_confidence

    def classify(self, samples: np.ndarray) -> Reason:
        if samples.size < SAMPLE_RATE // 10:
            raise ValueError(f"need at least 0.1 s of audio to classify, got {samples.size} samples")
        logits = self.runtime.logits(prepare(logmel(samples))).astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(np.argmax(probs))
        confidence = float(probs[best])
        reason = self.classes[best] if confidence >= self.min_confidence else "unknown"
        return Reason(reason, confidence, {c: float(p) for c, p in zip(self.classes, probs)})
