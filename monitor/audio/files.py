"""Audio in from files: decoding, down-mixing and streaming resampling to 16 kHz mono float32.

Files go through soundfile (WAV, FLAC, OGG, MP3; not ``torchaudio.load``, which needs FFmpeg). Every failure
becomes an :class:`AudioFileError` that names the file, so the CLI can print one clear line instead of a
traceback. The microphone path (``monitor.audio.capture``) reuses :class:`StreamResampler`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import structlog

from monitor import SAMPLE_RATE

log = structlog.get_logger(__name__)


class AudioFileError(Exception):
    """A file that cannot be used as audio input; the message names the file and the reason."""


def to_mono(frames: np.ndarray) -> np.ndarray:
    """(N,) or (N, channels) → (N,) float32 by averaging channels."""
    frames = np.asarray(frames, dtype=np.float32)
    return frames if frames.ndim == 1 else frames.mean(axis=1, dtype=np.float32)


MIN_RATE, MAX_RATE = 1000, 384000  # sample rates accepted from files and devices
LOWPASS_ZEROS = 6  # zero crossings of the windowed sinc on each side (torchaudio's default lowpass_filter_width)
ROLLOFF = 0.99  # cut-off as a fraction of the lower Nyquist frequency (torchaudio's default)
OUTPUTS_PER_GATHER = 4096  # outputs computed per vectorised step; bounds the index matrix's memory


class StreamResampler:
    """Resample a stream chunk by chunk, with the same result as resampling the whole signal at once; numpy only.

    The filter is torchaudio's default (``torchaudio.functional.resample``: a Hann-windowed sinc with 6 zero
    crossings, roll-off 0.99), which the training features were made with, so training and inference hear the same
    audio; ``tests/test_files.py`` holds the two equal to 1e-5. torchaudio builds one kernel row per output phase
    of the gcd-reduced ratio and rebuilds it for every call, which grows with the rates' lowest common multiple
    (44,101 Hz → 16 kHz: 16,000 phases, gigabytes). Here output ``n`` is the dot product of the input around
    ``t = n · orig / new`` with the filter sampled at that fractional offset; the table of offsets is built once
    per stream (at most ``new`` rows of ``2 K + 1`` taps, a few MB at worst) and outputs are computed in bounded
    steps, so any rate in ``[MIN_RATE, MAX_RATE]`` costs the same order of time and memory.

    Only the last ``K`` input samples are held back until the next chunk or :meth:`flush`.

    Example:
        >>> r = StreamResampler(48000)
        >>> out = np.concatenate([r.process(np.zeros(4800, np.float32)), r.flush()])
        >>> out.shape
        (1600,)
    """

    def __init__(self, orig_rate: int, new_rate: int = SAMPLE_RATE) -> None:
        if not MIN_RATE <= orig_rate <= MAX_RATE:
            raise ValueError(f"sample rate {orig_rate} Hz is outside the supported {MIN_RATE}–{MAX_RATE} Hz")
        g = math.gcd(int(orig_rate), int(new_rate))
        self.orig, self.new = int(orig_rate) // g, int(new_rate) // g
        self._table = None if self.passthrough else _filter_table(self.orig, self.new)
        self.taps_each_side = 0 if self._table is None else (self._table.shape[1] - 1) // 2
        self._buf = np.zeros(self.taps_each_side, dtype=np.float32)  # input from index _buf_start (zeros before 0)
        self._buf_start = -self.taps_each_side
        self._consumed = 0  # real input samples taken so far
        self._next = 0  # index of the next output sample

    @property
    def passthrough(self) -> bool:
        return self.orig == self.new

    @property
    def filter_bytes(self) -> int:
        """Memory of the filter table: bounded by the rates, never by their lowest common multiple."""
        return 0 if self._table is None else self._table.nbytes

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float32)
        if self.passthrough:
            return chunk
        self._consumed += chunk.size
        self._buf = np.concatenate([self._buf, chunk])
        # output n needs input up to floor(n·orig/new) + K, which must already be here
        last = ((self._consumed - 1 - self.taps_each_side) * self.new) // self.orig
        return self._emit(last + 1)

    def flush(self) -> np.ndarray:
        """Emit the outputs still owed, up to ``ceil(total_in · new / orig)`` samples, reading zeros past the end."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float32)
        self._buf = np.concatenate([self._buf, np.zeros(2 * self.taps_each_side + 1, np.float32)])
        out = self._emit(-(-self._consumed * self.new // self.orig))
        return out

    def _emit(self, stop: int) -> np.ndarray:
        k = self.taps_each_side
        pieces = []
        for first in range(self._next, stop, OUTPUTS_PER_GATHER):
            n = np.arange(first, min(stop, first + OUTPUTS_PER_GATHER), dtype=np.int64)
            centre = (n * self.orig) // self.new - self._buf_start
            taps = self._buf[centre[:, None] + np.arange(-k, k + 1)]
            pieces.append(np.einsum("ij,ij->i", taps, self._table[n % self.new]))
        self._next = max(self._next, stop)
        keep_from = (self._next * self.orig) // self.new - k - self._buf_start  # the next output's first tap
        if keep_from > 0:
            self._buf, self._buf_start = self._buf[keep_from:], self._buf_start + keep_from
        return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, dtype=np.float32)


def _filter_table(orig: int, new: int) -> np.ndarray:
    """(new, 2 K + 1): the filter for each output phase, at input offsets −K … K from ``floor(n · orig / new)``."""
    cutoff = min(orig, new) * ROLLOFF / orig  # in cycles per input sample, times 2 (1 = the input's Nyquist)
    k = math.floor(LOWPASS_ZEROS / cutoff) + 1
    phase = (np.arange(new, dtype=np.int64) * orig % new) / new  # fractional part of n · orig / new
    u = cutoff * (np.arange(-k, k + 1)[None, :] - phase[:, None])
    inside = np.abs(u) <= LOWPASS_ZEROS
    window = np.cos(np.pi * u / (2 * LOWPASS_ZEROS)) ** 2
    return np.where(inside, cutoff * np.sinc(u) * window, 0.0).astype(np.float32)


def in_range(samples: np.ndarray, path: Path, warned: set[str]) -> np.ndarray:
    """Samples as every stage after capture expects them, in [-1, 1], with a warning the first time in a file
    (``warned``: the warnings given so far) for what a float file held beyond: NaN and infinities become silence
    (one would make every score and level after it NaN, and a NaN confidence is not valid JSON), larger values
    are clipped (near 1e30 the log-mel's power overflows to NaN)."""
    def warn_once(event: str, detail: str) -> None:
        if event not in warned:
            warned.add(event)
            log.warning(event, path=str(path), detail=detail)

    bad = ~np.isfinite(samples)
    if bad.any():
        warn_once("audio_not_finite", "replaced by silence")
        samples = np.where(bad, np.float32(0.0), samples)
    if (np.abs(samples) > 1.0).any():
        warn_once("audio_out_of_range", "clipped to [-1, 1]")
        samples = np.clip(samples, -1.0, 1.0)
    return samples


def _open(path: Path) -> sf.SoundFile:
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    if not path.is_file():  # /dev/zero would never end; a FIFO cannot be rewound to read its header twice
        raise AudioFileError(f"{path}: not a regular file (a device, FIFO or socket); give a recorded file")
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
        try:
            resampler = StreamResampler(handle.samplerate)
        except ValueError as exc:
            raise AudioFileError(f"{path}: {exc}") from None
        block = max(1, int(block_seconds * handle.samplerate))
        warned: set[str] = set()
        try:
            # read() rather than blocks(): libsndfile calls some files (GSM 6.10 WAV) non-seekable, and blocks()
            # refuses those
            while (frames := handle.read(block, dtype="float32", always_2d=True)).size:
                out = resampler.process(in_range(to_mono(frames), path, warned))
                if out.size:
                    yield out
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioFileError(f"{path}: decoding failed part-way ({exc})") from None
        tail = resampler.flush()
        if tail.size:
            yield tail


def read_file(path: str | Path) -> np.ndarray:
    """Whole file as 16 kHz mono float32."""
    return np.concatenate(list(iter_file(path, block_seconds=30.0)))


def loudest_span(path: str | Path, seconds: float = 30.0) -> np.ndarray:
    """The loudest ``seconds`` of a file (on a 1 s grid), or all of it when shorter: two streaming passes, so
    memory does not grow with the file (classifying a 60-minute file used to need 2.3 GB)."""
    energy = np.zeros(0)
    total = 0
    for block in iter_file(path, 1.0):
        second = (total + np.arange(block.size)) // SAMPLE_RATE
        energy = np.pad(energy, (0, max(0, int(second[-1]) + 1 - energy.size)))
        np.add.at(energy, second, np.square(block, dtype=np.float64))
        total += block.size
    window = int(seconds)
    if total <= window * SAMPLE_RATE:
        return read_file(path)
    start = int(np.argmax(np.convolve(energy, np.ones(window), mode="valid"))) * SAMPLE_RATE
    pieces, done = [], 0
    for block in iter_file(path, 1.0):
        lo, hi = max(start - done, 0), min(start + window * SAMPLE_RATE - done, block.size)
        if lo < hi:
            pieces.append(block[lo:hi])
        done += block.size
        if done >= start + window * SAMPLE_RATE:
            break
    return np.concatenate(pieces)
