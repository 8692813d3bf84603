"""The torch runtime: shipped ``.pt`` models on the CPU or a CUDA GPU.

Imported only when a configured model is a ``.pt`` file (:mod:`monitor.inference.detect`, :mod:`monitor.inference.classify`), so the
edge install (ONNX Runtime, :mod:`monitor.inference.onnx_runtime`) never loads torch. Both runtimes offer the same two
objects: a detector (``streaming``, ``window_samples``, ``frame_stream()``) and a reason model (``classes``,
``run(logmel, metadata) -> (logits, embedding)``), each with its manifest ``entry``.
"""

from __future__ import annotations

import numpy as np
import structlog
import torch

from monitor import SAMPLE_RATE
from monitor.inference.models.streaming_cnn10 import FRAME, StreamingCnn10
from monitor.inference.weights import load_model

log = structlog.get_logger(__name__)


def resolve_device(requested: str, component: str = "detector") -> str:
    """``cpu``, ``cuda`` or ``auto`` → the device to use; a missing GPU falls back to the CPU with a warning."""
    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        log.warning("cuda_unavailable", detail=f"{component}.device is cuda but no GPU is usable; running on CPU")
    return "cpu"


class Detector:
    def __init__(self, path, device: str, threads: int) -> None:
        torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.model, self.entry = load_model(path, self.device)
        self.streaming = isinstance(self.model, StreamingCnn10)
        # a window-form model says how much audio it scores (YAMNet: 0.975 s); CNN10's window form takes 1 s
        self.window_samples = getattr(self.model, "window_samples", SAMPLE_RATE)
        self.embeds = hasattr(self.model, "score_span")
        # YAMNet's windows start on its 10 ms log-mel frames, which they then share; a window of another model is
        # scored on its own, wherever it starts
        self.frame_samples = FRAME if self.streaming else getattr(self.model, "frame_samples", 1)

    def frame_stream(self):
        return self.model.stream()

    @torch.inference_mode()
    def score_span(self, audio: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Cry probabilities (W,) and, from a model with ``score_span`` (YAMNet), the embeddings (W, D) of the windows
        ``audio[s : s + window_samples]`` for each ``s`` in ``starts``."""
        samples = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(self.device)
        if not self.embeds:
            batch = torch.stack([samples[s : s + self.window_samples] for s in np.asarray(starts)])
            return torch.sigmoid(self.model(batch).float()).cpu().numpy(), None
        frames = torch.from_numpy(np.asarray(starts) // self.frame_samples).to(self.device)
        logits, embedding = self.model.score_span(samples, frames)
        return torch.sigmoid(logits.float()).cpu().numpy(), embedding.float().cpu().numpy()


class ReasonModel:
    """On CUDA the network runs under fp16 autocast (the log-mel comes in fp32 from :func:`monitor.inference.features.logmel`:
    a full-scale power spectrum overflows fp16)."""

    def __init__(self, path, device: str, threads: int = 1) -> None:  # threads: the detector sets torch's
        self.device = resolve_device(device, "classifier")
        self.model, self.entry = load_model(path, self.device)
        self.classes: tuple[str, ...] = self.model.classes
        self.uses_metadata: bool = self.model.uses_metadata

    @torch.inference_mode()
    def run(self, logmel: np.ndarray, metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated logits (classes,) and the embedding (D,) of one prepared log-mel (T, 64); ``metadata`` is read
        only by a model that uses it."""
        x = torch.from_numpy(np.ascontiguousarray(logmel, dtype=np.float32)).unsqueeze(0).to(self.device)
        m = torch.from_numpy(np.asarray(metadata, dtype=np.float32)).unsqueeze(0).to(self.device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device == "cuda"):
            logits, embedding = self.model.classify(x, m if self.uses_metadata else None)
        return logits.float()[0].cpu().numpy(), embedding.float()[0].cpu().numpy()
