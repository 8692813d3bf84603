"""Detector: scores 1 s windows of 16 kHz audio with the CNN10 cry model behind a loudness gate.

Windows quieter than ``gate_dbfs`` get score 0 without running the model (a silent nursery costs almost no
CPU) and still report their level. The model runs on ``cpu`` by default; ``cuda`` when configured and present,
``auto`` picks it when present. A missing GPU falls back to the CPU with a logged warning. On CUDA the network
runs under fp16 autocast while the log-mel front end stays fp32 (a full-scale power spectrum overflows fp16).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import structlog
import torch

from monitor import SAMPLE_RATE
from monitor.config import DetectorConfig, OperatingPoint
from monitor.features import level_dbfs
from monitor.models.verifier import VERIFIER_SECONDS
from monitor.weights import load_model

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WindowScore:
    t: float  # audio time of the window's end, seconds since the stream started
    score: float  # cry probability, 0 when gated
    level_dbfs: float
    gated: bool


def resolve_device(requested: str, component: str = "detector") -> str:
    """``cpu``, ``cuda`` or ``auto`` → the device to use; a missing GPU falls back to the CPU with a warning."""
    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        log.warning("cuda_unavailable", detail=f"{component}.device is cuda but no GPU is usable; running on CPU")
    return "cpu"


def make_detector(config: DetectorConfig) -> CryDetector | LoudnessDetector:
    return LoudnessDetector(config) if config.kind == "loudness" else CryDetector(config)


class LoudnessDetector:
    """``detector.kind: loudness``: any sound, not only crying (users of other monitors ask for this for newborns).

    A window scores 1 when its newest hop (not the whole 1 s window, so a short bang cannot stay "loud" for a
    whole window) reaches ``loudness_dbfs``; the state machine then asks for ``loudness_hold_seconds`` of them.
    """

    def __init__(self, config: DetectorConfig) -> None:
        self.threshold_dbfs = config.loudness_dbfs
        self.frame = round(config.hop_seconds * SAMPLE_RATE)
        self.model_id = f"loudness@{config.loudness_dbfs:g}dBFS"
        self.presets: dict[str, OperatingPoint] = {}  # the level is the setting (config.effective_events)
        self.verifier_seconds = 0.0

    def verify(self, audio: np.ndarray) -> float:
        raise NotImplementedError("the loudness detector has no verifier")

    def score(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        levels = np.array([level_dbfs(w[-self.frame :]) for w in windows])
        loud = levels >= self.threshold_dbfs
        return loud.astype(np.float32), levels, np.zeros(len(windows), dtype=bool)


class CryDetector:
    """Batch scorer: ``score(windows (B, N)) -> (probabilities, levels dBFS, gated)``, each of shape (B,)."""

    def __init__(self, config: DetectorConfig) -> None:
        torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device)
        self.model, self.entry = load_model(config.model, self.device)
        self.model_id = self.entry.sha256[:12]
        self.presets = self.entry.operating_point
        self.verifier_seconds = VERIFIER_SECONDS if getattr(self.model, "verifier", None) is not None else 0.0
        self.gate_dbfs = config.gate_dbfs

    @torch.inference_mode()
    def verify(self, audio: np.ndarray) -> float:
        """The verifier head's cry probability for ``verifier_seconds`` of audio (called only at a would-be start)."""
        batch = torch.from_numpy(np.ascontiguousarray(audio[None])).to(self.device)
        return float(torch.sigmoid(self.model.verify(batch).float())[0])

    @torch.inference_mode()
    def score(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        levels = np.array([level_dbfs(w) for w in windows])
        probs = np.zeros(len(windows), dtype=np.float32)
        gated = levels < self.gate_dbfs
        loud = np.flatnonzero(~gated)
        if loud.size:
            batch = torch.from_numpy(np.ascontiguousarray(windows[loud])).to(self.device)
            logmel = self.model.frontend(batch)
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.device == "cuda"):
                logits = self.model.forward_logmel(logmel)
            probs[loud] = torch.sigmoid(logits.float()).cpu().numpy()
        return probs, levels, gated
