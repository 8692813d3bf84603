"""Which runtime runs a model file, and what both runtimes offer: a ``.onnx`` export runs in ONNX Runtime
(:mod:`monitor.inference.onnx_runtime`, numpy only: the edge install), anything else in torch
(:mod:`monitor.inference.torch_runtime`). The two are twins behind the protocols below, so the detector and the
classifier never ask which one they have. Both read the manifest (:mod:`monitor.inference.weights`); neither is
imported by it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from monitor.inference.weights import ModelEntry, ModelFileError, verified_entry


class DetectorRuntime(Protocol):
    entry: ModelEntry
    device: str  # "cpu" or "cuda": where it actually runs
    streaming: bool  # the streaming CNN10 (frame_stream), else a window-form model (score_span)
    window_samples: int
    frame_samples: int  # a window-form model's windows start on this grid (YAMNet: its 10 ms log-mel frames)
    embeds: bool  # score_span gives embeddings (YAMNet)

    def frame_stream(self): ...

    def score_span(self, audio: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


class ReasonRuntime(Protocol):
    entry: ModelEntry
    device: str
    classes: tuple[str, ...]

    def run(self, logmel: np.ndarray, metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def open_model(path: Path, role: str, device: str = "cpu", threads: int = 1) -> DetectorRuntime | ReasonRuntime:
    """The model at ``path`` in the runtime its file names, as a ``role`` (``detector`` or ``classifier``): a
    ``.onnx`` export in ONNX Runtime (:mod:`monitor.inference.onnx_runtime`), anything else in torch
    (:mod:`monitor.inference.torch_runtime`). A runtime that is not installed is a one-line error naming its extra."""
    path = Path(path)
    if path.suffix == ".onnx":
        from monitor.inference import onnx_runtime as runtime
    else:
        verified_entry(path, "the model card names the tool that makes it")  # before the seconds torch takes
        try:
            from monitor.inference import torch_runtime as runtime
        except ImportError:
            raise ModelFileError(f"{path}: a .pt model needs torch: pip install -e '.[torch]' (or configure its "
                                 ".onnx export)") from None
    kind = {"detector": runtime.Detector, "classifier": runtime.ReasonModel}[role]
    return kind(path, device, threads)
