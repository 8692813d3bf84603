"""Detectors: turn a stream of 16 kHz audio into a cry probability for a window every hop.

A detector is a factory of *score streams*: ``detector.stream(hop)`` returns an object whose ``push(samples)``
takes audio in chunks of any size and returns ``(ends, probabilities)`` for the windows those samples completed
(``ends``: sample index, from the stream's start, where each window ends). The pipeline reads the window's level
from its own ring buffer and gates quiet windows (score 0).

- :class:`CryDetector` with a ``cnn10-stream`` model (the shipped detector) computes each 80 ms frame of the CNN
  once, so its cost per second of audio does not depend on the hop, which must be a multiple of 80 ms; with a
  window-form model (``yamnet-cry``, or ``cnn10``, the previous detectors) it scores each window as on its own
  (YAMNet's windows share their 10 ms log-mel frames, so its hop must be a multiple of 10 ms). A ``.onnx`` model file
  (``tools/export_onnx.py``) runs the same stream in ONNX Runtime (:mod:`monitor.inference.onnx_runtime`): the file says
  which runtime it needs, so no setting can contradict it. Its presets are its own manifest entry's. torch is
  imported only for a ``.pt`` model (:mod:`monitor.inference.torch_runtime`).
- :class:`LoudnessDetector` scores any sound, not only crying.

The model runs on ``cpu`` by default; ``cuda`` when configured and present, ``auto`` picks it when present. A
missing GPU falls back to the CPU with a logged warning.
"""

from __future__ import annotations

import numpy as np

from monitor import SAMPLE_RATE
from monitor.config import ConfigError, DetectorConfig
from monitor.core.presets import LOUDNESS_HOP_SECONDS, OperatingPoint
from monitor.core.home_sounds import HoldRules
from monitor.core.levels import level_dbfs
from monitor.inference.onnx_runtime import STEP as FRAME  # the streaming CNN10's 80 ms frame, without importing torch
from monitor.inference.runtime import open_model

MAX_BATCH = 32  # windows per forward pass of a window-form model


def make_detector(config: DetectorConfig) -> CryDetector | LoudnessDetector:
    return LoudnessDetector(config) if config.kind == "loudness" else CryDetector(config)


class LoudnessDetector:
    """``detector.kind: loudness``: any sound, not only crying (users of other monitors ask for this for newborns).

    Each hop scores 1 when its own audio (not a whole window, so a short bang cannot stay "loud" for long)
    reaches ``loudness_dbfs``; the state machine then asks for ``loudness_hold_seconds`` of them.
    """

    def __init__(self, config: DetectorConfig) -> None:
        self.threshold_dbfs = config.loudness_dbfs
        self.hop_seconds = LOUDNESS_HOP_SECONDS
        self.window_samples = round((config.hop_seconds or LOUDNESS_HOP_SECONDS) * SAMPLE_RATE)
        self.model_id = f"loudness@{config.loudness_dbfs:g}dBFS"
        self.embedding_space = None  # a level has no embedding: "not a cry" marks cannot apply
        self.hold_rules = None
        self.presets: dict[str, OperatingPoint] = {}  # the level is the setting (monitor.core.presets.effective_events)

    def stream(self, hop: int) -> LoudnessStream:
        return LoudnessStream(self.threshold_dbfs, hop)


class LoudnessStream:
    embeddings = None

    def __init__(self, threshold_dbfs: float, hop: int) -> None:
        self.threshold_dbfs, self.hop = threshold_dbfs, hop
        self._pending = np.zeros(0, dtype=np.float32)
        self._done = 0  # samples already scored

    def push(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        audio = np.concatenate([self._pending, samples])
        count = audio.size // self.hop
        self._pending = audio[count * self.hop :]
        loud = [level_dbfs(audio[i * self.hop : (i + 1) * self.hop]) >= self.threshold_dbfs for i in range(count)]
        ends = self._done + self.hop * np.arange(1, count + 1)
        self._done += count * self.hop
        return ends, np.array(loud, dtype=np.float32)


class CryDetector:
    """A CNN cry model (``detector.model``, checked against its manifest entry) as a score-stream factory."""

    def __init__(self, config: DetectorConfig) -> None:
        self.runtime = open_model(config.model, "detector", config.device, config.threads)
        self.entry, self.device = self.runtime.entry, self.runtime.device
        self.streaming, self.window_samples = self.runtime.streaming, self.runtime.window_samples
        self.frame_samples = self.runtime.frame_samples
        self.model_id = self.entry.sha256[:12]
        # whose space the window embeddings live in (None: this model gives none): a "not a cry" mark is only ever
        # compared with embeddings of the weights that made it (monitor.core.home_sounds)
        self.embedding_space = (self.entry.embedding_space or self.model_id) if self.runtime.embeds else None
        self.hold_rules = self._hold_rules(config)
        self.presets = self.entry.operating_point
        # an uncalibrated model: 3 frames for the streaming form; the window form shipped with 0.25 s
        self.hop_seconds = self.entry.hop_seconds or (3 * FRAME / SAMPLE_RATE if self.streaming else 0.25)

    def _hold_rules(self, config: DetectorConfig) -> HoldRules | None:
        """The "not a cry" rules this model's study chose, if the feature is on (``detector.not_a_cry``)."""
        studied = self.entry.not_a_cry if self.embedding_space else None
        if config.not_a_cry == "on" and studied is None:
            raise ConfigError(f"detector.not_a_cry is on, but {config.model} has no studied rules "
                              "(a model with embeddings, then tools/not_a_cry_study.py)")
        if config.not_a_cry == "off" or studied is None or (config.not_a_cry == "auto" and not studied["on_by_default"]):
            return None
        return HoldRules.from_dict(studied)

    def stream(self, hop: int) -> ModelStream | WindowStream:
        if hop % self.frame_samples:
            raise ConfigError(f"detector.hop_seconds must be a multiple of {self.frame_samples / SAMPLE_RATE:g} s for "
                              f"this model (its frames are {self.frame_samples / SAMPLE_RATE:g} s apart), "
                              f"got {hop / SAMPLE_RATE:g} s")
        if not self.streaming:
            return WindowStream(self, hop)
        return ModelStream(self.runtime.frame_stream(), hop // FRAME)

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """Cry probabilities (B,) for windows (B, N), each scored on its own: a window-form model's scores, and
        the reference a streaming torch model must equal. The windows are laid end to end, each padded to the
        model's frame grid, so they share no frame."""
        count, n = windows.shape
        padded = -(-n // self.frame_samples) * self.frame_samples
        audio = np.zeros((count, padded), dtype=np.float32)
        audio[:, :n] = windows
        return self.runtime.score_span(audio.reshape(-1), np.arange(count) * padded)[0]


class ModelStream:
    """A streaming model's scores, every ``every``-th frame (the hop)."""

    embeddings = None  # the streaming CNN10 gives no embeddings

    def __init__(self, stream, every: int) -> None:
        self._stream, self._every = stream, every
        self._seen = 0  # frames produced so far

    def push(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ends, logits = self._stream.push(samples)
        keep = (self._seen + np.arange(ends.size)) % self._every == 0
        self._seen += ends.size
        return ends[keep], (1.0 / (1.0 + np.exp(-logits[keep].astype(np.float64)))).astype(np.float32)


class WindowStream:
    """A window-form model: each window (the last second at every hop) scored as on its own, up to
    :data:`MAX_BATCH` per call, those of a call sharing their log-mel frames (``runtime.score_span``).
    ``embeddings``: those of the windows the last :meth:`push` returned (None from a model without them, or when it
    returned none)."""

    def __init__(self, detector: CryDetector, hop: int) -> None:
        self.detector, self.hop = detector, hop
        self.embeddings: np.ndarray | None = None
        self._recent = np.zeros(0, dtype=np.float32)  # the audio the next window needs
        self._total = 0  # samples pushed
        self._next_end = detector.window_samples

    def push(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        window = self.detector.window_samples
        audio = np.concatenate([self._recent, samples])
        start = self._total - self._recent.size  # sample index of audio[0]
        self._total += samples.size
        ends = np.arange(self._next_end, self._total + 1, self.hop)
        if ends.size:
            self._next_end = int(ends[-1]) + self.hop
        self._recent = audio[max(0, self._next_end - window - start) :]
        scored = [self.detector.runtime.score_span(audio[batch[0] - start - window : batch[-1] - start],
                                                   batch - batch[0])
                  for batch in np.array_split(ends, -(-ends.size // MAX_BATCH))] if ends.size else []
        embeddings = [e for _, e in scored]
        self.embeddings = np.concatenate(embeddings) if scored and embeddings[0] is not None else None
        return ends, np.concatenate([p for p, _ in scored]) if scored else np.zeros(0, dtype=np.float32)
