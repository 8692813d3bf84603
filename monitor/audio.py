"""Audio in from files: decoding, down-mixing and streaming resampling to 16 kHz mono float32.

Files go through soundfile (WAV, FLAC, OGG, MP3; not ``torchaudio.load``, which needs FFmpeg). Every failure
becomes an :class:`AudioFileError` that names the file, so the CLI can print one clear line instead of a
traceback. The microphone path (``monitor.capture``) reuses :class:`StreamResampler`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from monitor import SAMPLE_RATE


class AudioFileError(Exception):
    """A file that cannot be used as audio input; the message names the file and the reason."""


def to_mono(frames: np.ndarray) -> np.ndarray:
    """(N,) or (N, channels) → (N,) float32 by averaging channels."""
    frames = np.asarray(frames, dtype=np.float32)
    return frames if frames.ndim == 1 else frames.mean(axis=1, dtype=np.float32)


class StreamResampler:
    """Resample a stream chunk by chunk with the same result as resampling the whole signal at once.

    torchaudio's windowed-sinc resampler is a strided convolution: output ``k`` depends on input near
    ``k·orig/new``. Processing overlapping segments whose starts are multiples of ``orig`` (gcd-reduced) keeps
    the output grid aligned, so only a ``pad``-sample lookahead (≈ 20 ms at 44.1 kHz) is held back until the
    next chunk or :meth:`flush`.

    Example:
        >>> r = StreamResampler(48000)
        >>> out = np.concatenate([r.process(np.zeros(4800, np.float32)), r.flush()])
        >>> out.shape
        (1600,)
    """

    def __init__(self, orig_rate: int, new_rate: int = SAMPLE_RATE) -> None:
        if orig_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {orig_rate}")
        g = math.gcd(int(orig_rate), int(new_rate))
        self.orig, self.new = int(orig_rate) // g, int(new_rate) // g
        width = math.ceil(6 * self.orig / (min(self.orig, self.new) * 0.99))  # torchaudio's filter half-width
        self.pad = self.orig * math.ceil((width + self.orig) / self.orig)
        self._buf = np.zeros(self.pad, dtype=np.float32)  # leading zeros = the whole-signal left padding
        self._consumed_in = 0  # real input samples taken so far
        self._emitted = 0

    @property
    def passthrough(self) -> bool:
        return self.orig == self.new

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float32)
        if self.passthrough:
            return chunk
        self._consumed_in += chunk.size
        self._buf = np.concatenate([self._buf, chunk])
        end = ((self._buf.size - self.pad) // self.orig) * self.orig
        if end <= self.pad:
            return np.zeros(0, dtype=np.float32)
        out = self._resample(self._buf)[self.pad * self.new // self.orig : end * self.new // self.orig]
        self._buf = self._buf[end - self.pad :]
        self._emitted += out.size
        return out

    def flush(self) -> np.ndarray:
        """Emit what the held-back lookahead still owes, up to ``ceil(total_in · new / orig)`` samples."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float32)
        total = math.ceil(self._consumed_in * self.new / self.orig)
        tail = self._resample(np.concatenate([self._buf, np.zeros(self.pad + self.orig, np.float32)]))
        start = self.pad * self.new // self.orig
        out = tail[start : start + max(0, total - self._emitted)]
        self._emitted += out.size
        self._buf = np.zeros(self.pad, dtype=np.float32)
        return out

    def _resample(self, x: np.ndarray) -> np.ndarray:
        return AF.resample(torch.from_numpy(x), self.orig, self.new).numpy()


def _open(path: Path) -> sf.SoundFile:
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFileError(f"{path}: not a readable audio file ({exc})") from None
    if handle.frames == 0:
        handle.close()
        raise AudioFileError(f"{path}: contains no audio samples")
    return handle


def iter_file(path: str | Path, block_seconds: float = 1.0) -> Iterator[np.ndarray]:
    """Yield a file as 16 kHz mono float32 blocks, decoding and resampling incrementally (any length works)."""
    path = Path(path)
    with _open(path) as handle:
        resampler = StreamResampler(handle.samplerate)
        block = max(1, int(block_seconds * handle.samplerate))
        try:
            for frames in handle.blocks(blocksize=block, dtype="float32", always_2d=True):
                out = resampler.process(to_mono(frames))
                if out.size:
                    yield out
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioFileError(f"{path}: decoding failed part-way ({exc})") from None
        tail = resampler.flush()
        if tail.size:
            yield tail


def read_file(path: str | Path) -> np.ndarray:
    """Whole file as 16 kHz mono float32."""
    return np.concatenate(list(iter_file(path, block_seconds=30.0)))
