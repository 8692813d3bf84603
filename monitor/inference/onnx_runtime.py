"""The ONNX runtime: exported models run by ONNX Runtime with numpy only (no torch), the edge path.

Two kinds of model export (``tools/export_onnx.py``), each with the interface of its torch twin in
:mod:`monitor.inference.torch_runtime` (:func:`monitor.inference.runtime.open_model` picks the runtime by the file's suffix):
:class:`Detector` and :class:`ReasonModel` (the reason classifier: a graph
from a prepared log-mel of any length (and, for a metadata model, the baby's metadata vector) to calibrated
logits and the embedding the per-baby adaptation learns from; the log-mel itself comes from
:func:`monitor.inference.features.logmel`).

The detector:

``tools/export_onnx.py`` writes ``models/<name>.onnx`` from a shipped ``cnn10-stream`` detector: one graph of
:class:`~monitor.inference.models.streaming_cnn10.FrameStep`: any whole number of 80 ms steps from raw samples (the log-mel
is inside) to the logits of the windows ending there. Its manifest entry holds its own sha256 and the sha256 of the detector it
was exported from, so a stale export (the ``.pt`` retrained since) or a modified file is refused, as for the
torch weights.

:class:`OnnxStream` has the score-stream interface of :mod:`monitor.inference.detect` (``push(samples) -> (ends, logits)``)
and gives the torch stream's results to float precision (``tests/test_onnx_runtime.py``). The torch stream starts its
first block 4 log-mel frames into the audio and reaches its first window at ``window_samples``; the step graph
starts with zero state, so the driver feeds it 4 frames (640 samples) of zeros first, which puts its pooling pairs
on the same grid, and discards the outputs whose state still held those zeros (the first ``WARM_STEPS`` steps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import structlog

from monitor.inference.weights import ModelFileError, read_manifest, verified_entry

STEP = 1280  # samples per step: one 80 ms frame embedding (monitor.inference.models.streaming_cnn10.FRAME)
STEP_SAMPLES = 512 + 7 * 160  # samples one step reads: 8 log-mel frames of 512 samples, 160 apart
MAX_STEPS = 64  # steps per call at most (5 s): a replay's big blocks in a few calls, memory bounded
LEAD = 640  # zeros before the audio: 4 log-mel frames, the first block's context
WARM_STEPS = 11  # outputs before this step depend on the zero state (8 steps to the first embedding, 3 more to a window)
WINDOW_SAMPLES = STEP * WARM_STEPS + STEP_SAMPLES - LEAD  # where the first window ends: the torch model's window

log = structlog.get_logger(__name__)


def load_session(path: Path, threads: int = 1, device: str = "cpu", component: str = "detector",
                 extended_optimizations: bool = True):
    """An ONNX Runtime session for a listed, unmodified, up-to-date export; errors are one line. ``device``
    ``cuda`` or ``auto`` uses ONNX Runtime's CUDA provider when the installed build has one (onnxruntime-gpu, e.g.
    on a Jetson), with the CPU provider as the fallback for any operator it lacks."""
    try:
        import onnxruntime
    except ImportError:
        raise ModelFileError(f"{path}: a .onnx model needs ONNX Runtime: pip install -e '.[edge]'") from None
    path = Path(path)
    entry = verified_entry(path, "tools/export_onnx.py makes it")
    source = read_manifest(path.parent).get(entry.kwargs.get("exported_from", ""))
    if source is None or source.sha256 != entry.kwargs.get("source_sha256"):
        raise ModelFileError(f"{path}: exported from another version of {entry.kwargs.get('exported_from')} "
                             f"({entry.kwargs.get('source_sha256', '?')[:12]}); run tools/export_onnx.py again")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not extended_optimizations:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    elif device == "cuda":
        log.warning("cuda_unavailable", detail=f"{component}.device is cuda but this ONNX Runtime has no CUDA "
                                               "provider (onnxruntime-gpu); running on CPU")
    return onnxruntime.InferenceSession(str(path), options, providers=providers), entry


def _device(session) -> str:
    return "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"


class Detector:
    """A step-graph export (``onnx-frame-step*``: the streaming CNN10) streams; a span export (``onnx-span*``: YAMNet)
    scores the windows of a stretch of audio, each log-mel frame computed once
    (:func:`monitor.training.export_onnx.span_form`)."""

    def __init__(self, path: Path, device: str = "cpu", threads: int = 1) -> None:
        self.session, self.entry = load_session(path, threads, device)
        self.device = _device(self.session)
        self.streaming = self.entry.arch.startswith("onnx-frame-step")
        if not self.streaming and not self.entry.arch.startswith("onnx-span"):
            raise ModelFileError(f"{path}: an export of a form this version no longer runs ({self.entry.arch}); "
                                 "run tools/export_onnx.py again")
        self.window_samples = WINDOW_SAMPLES if self.streaming else int(self.entry.kwargs["window_samples"])
        self.frame_samples = STEP if self.streaming else int(self.entry.kwargs["frame_samples"])
        self.embeds = "embedding" in {o.name for o in self.session.get_outputs()}

    def frame_stream(self) -> OnnxStream:
        return OnnxStream(self.session)

    def score_span(self, audio: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Cry probabilities (W,) and embeddings (W, D) of the windows ``audio[s : s + window_samples]`` for each
        ``s`` in ``starts`` (multiples of ``frame_samples``)."""
        logits, embedding = self.session.run(None, {
            "audio": np.ascontiguousarray(audio, dtype=np.float32),
            "starts": (np.asarray(starts) // self.frame_samples).astype(np.int64)})
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32), embedding


class ReasonModel:
    def __init__(self, path: Path, device: str = "cpu", threads: int = 1) -> None:
        # Basic graph optimizations only: the extended ones (layout transforms, weight pre-packing) copy the 20 MB
        # of weights, +50 MB of peak RSS, to save 2-4 ms on a classification that runs twice per cry (5.2 ms
        # against 7.3-8.9 ms on 3.5 s of audio; one core of an AMD EPYC with VNNI, 2026-12-07; this figure is
        # written only here). The int8 detector needs them: its int8 convolutions are fused there (4x slower without).
        self.session, self.entry = load_session(path, threads, device, "classifier", extended_optimizations=False)
        self.device = _device(self.session)
        self.classes: tuple[str, ...] = tuple(self.entry.kwargs["classes"])
        self.uses_metadata = "metadata" in {i.name for i in self.session.get_inputs()}
        if [o.name for o in self.session.get_outputs()] != ["logits", "embedding"]:
            raise ModelFileError(f"{path}: an export from before embeddings (outputs "
                                 f"{[o.name for o in self.session.get_outputs()]}); run tools/export_onnx.py again")

    def run(self, logmel: np.ndarray, metadata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated logits (classes,) and the embedding (D,) of one prepared log-mel (T, 64); ``metadata`` is read
        only by a model that uses it."""
        feed = {"logmel": np.ascontiguousarray(logmel, dtype=np.float32)[None]}
        if self.uses_metadata:
            feed["metadata"] = np.asarray(metadata, dtype=np.float32)[None]
        logits, embedding = self.session.run(["logits", "embedding"], feed)
        return logits[0], embedding[0]


class OnnxStream:
    """Drives the exported step graph over a stream, all the whole steps it has in one call (up to
    :data:`MAX_STEPS`); windows end at ``window_samples + k · STEP``."""

    def __init__(self, session) -> None:
        self.session = session
        inputs = session.get_inputs()
        self._state_names = [i.name for i in inputs[1:]]
        self._state = [np.zeros(i.shape, dtype=np.float32) for i in inputs[1:]]
        self._audio = np.zeros(LEAD, dtype=np.float32)  # not yet consumed, from the next step's first sample
        self._steps = 0

    def push(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._audio = np.concatenate([self._audio, np.asarray(samples, dtype=np.float32)])
        logits = []
        begin = 0
        while (steps := min(MAX_STEPS, (self._audio.size - begin - STEP_SAMPLES) // STEP + 1)) > 0:
            feed = {"samples": self._audio[begin : begin + STEP_SAMPLES + (steps - 1) * STEP],
                    **dict(zip(self._state_names, self._state))}
            out, *self._state = self.session.run(None, feed)
            logits.append(out)
            begin += steps * STEP
        self._audio = self._audio[begin:]
        first = self._steps
        self._steps += begin // STEP
        index = np.arange(max(first, WARM_STEPS), self._steps)  # steps whose window has no zero state in it
        logits = np.concatenate(logits)[index - first] if logits else np.zeros(0, dtype=np.float32)
        return (WINDOW_SAMPLES + STEP * (index - WARM_STEPS)).astype(np.int64), logits.astype(np.float32)
