"""The *Last cry* picture: a small PNG of a cry's spectrogram, from ``classifier.lookback_seconds`` before its
start to its end, with the detector's score and the sound level under it, published at ``cry_end``.

Layout, :data:`WIDTH` pixels wide whatever the cry's length: :data:`BANDS` mel bands (50 Hz at the bottom to
8 kHz, 1 px each, the loudest part of the cry brightest over :data:`DYNAMIC_RANGE_DB`), then the score (0 to 1,
orange) and the level (-90 to 0 dBFS, teal) as filled strips; a grey line in the strips marks ``cry_start``.

It is drawn with numpy and a minimal PNG encoder on the standard library's zlib (:func:`png_indexed`): no
plotting library on the edge install. The spectrum is computed as the audio arrives (frames of
:data:`~monitor.inference.features.N_FFT` samples without overlap, summed into at most ``2 · WIDTH`` bins
that merge pairwise as the cry grows), so memory is bounded for a cry of any length and what is left for
``cry_end`` is the drawing: ``python tools/bench_picture.py`` measures it.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from collections.abc import Callable

import numpy as np

from monitor import SAMPLE_RATE
from monitor.core.pipeline import WindowScore
from monitor.driver import Emitted, Sink
from monitor.inference.features import N_FFT, mel_filterbank

WIDTH = 320
BANDS = 96
STRIP = 24  # pixels of each strip under the spectrogram
DYNAMIC_RANGE_DB = 70.0
LEVEL_FLOOR_DBFS = -90.0
_FILTERBANK = mel_filterbank(BANDS)
_WINDOW = np.hanning(N_FFT).astype(np.float32)

# palette: 0..SHADES-1 the spectrogram ramp (dark purple → orange → pale yellow), then the strips' colours
SHADES = 200
_ANCHORS = np.array([[0, 0, 4], [80, 18, 123], [183, 55, 121], [252, 137, 97], [252, 253, 191]], np.float64)
BACKGROUND, SCORE, LEVEL, MARK = range(SHADES, SHADES + 4)
PALETTE = np.vstack([
    np.stack([np.interp(np.linspace(0, 1, SHADES), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
              for c in range(3)], axis=1),
    [[24, 24, 24], [255, 160, 0], [0, 180, 160], [140, 140, 140]],
]).round().astype(np.uint8)


def png_indexed(pixels: np.ndarray, palette: np.ndarray) -> bytes:
    """A palette PNG of ``pixels`` ((height, width) uint8 indices into ``palette``, (n, 3) uint8): IHDR, PLTE,
    one zlib-compressed IDAT with filter type 0 on every row (the PNG spec's advice for palette images), IEND."""
    height, width = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = np.hstack([np.zeros((height, 1), np.uint8), pixels.astype(np.uint8)])  # filter byte 0, then the row
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))  # 8-bit palette, no interlace
            + chunk(b"PLTE", palette.astype(np.uint8).tobytes())
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + chunk(b"IEND", b""))


class Spectrum:
    """Mel power of a stretch of audio fed in pieces, in at most ``2 · WIDTH`` bins of equal length: when they
    are full, neighbours merge and each bin covers twice as many frames."""

    def __init__(self) -> None:
        self.sums = np.zeros((2 * WIDTH, BANDS))
        self.frames = 0  # whole frames so far
        self.frames_per_bin = 1
        self._unframed = np.zeros(0, np.float32)  # the start of the next frame

    def add(self, samples: np.ndarray) -> None:
        audio = np.concatenate([self._unframed, samples])
        whole = audio.size // N_FFT
        self._unframed = audio[whole * N_FFT:]
        power = (np.abs(np.fft.rfft(audio[: whole * N_FFT].reshape(whole, N_FFT) * _WINDOW)) ** 2) @ _FILTERBANK
        while power.shape[0]:
            if self.frames == 2 * WIDTH * self.frames_per_bin:  # full: merge neighbours
                self.sums[:WIDTH] = self.sums.reshape(WIDTH, 2, BANDS).sum(axis=1)
                self.sums[WIDTH:] = 0.0
                self.frames_per_bin *= 2
            take = min(power.shape[0], 2 * WIDTH * self.frames_per_bin - self.frames)
            np.add.at(self.sums, (self.frames + np.arange(take)) // self.frames_per_bin, power[:take])
            self.frames += take
            power = power[take:]

    @property
    def seconds(self) -> float:
        return self.frames * N_FFT / SAMPLE_RATE

    def columns(self) -> np.ndarray:
        """Mean power per picture column, (WIDTH, BANDS): bins averaged into columns, or repeated for a short
        stretch."""
        used = -(-self.frames // self.frames_per_bin)
        counts = np.minimum(self.frames - np.arange(used) * self.frames_per_bin, self.frames_per_bin)
        mean = self.sums[:used] / counts[:, None]
        edges = np.arange(WIDTH + 1) * used // WIDTH
        width = np.maximum(np.diff(edges), 1)  # reduceat gives the single bin where an edge repeats
        return np.add.reduceat(mean, np.minimum(edges[:-1], used - 1), axis=0) / width[:, None]


def render(spectrum: Spectrum, scores: list[WindowScore], t0: float, start_t: float) -> bytes:
    """The picture of audio ``spectrum`` that began at audio time ``t0``, with the window ``scores`` over it and
    the mark at ``start_t`` (the ``cry_start``)."""
    db = 10 * np.log10(spectrum.columns().T[::-1] + 1e-12)  # (BANDS, WIDTH), high frequencies on top
    shade = np.clip((db - db.max() + DYNAMIC_RANGE_DB) / DYNAMIC_RANGE_DB, 0.0, 1.0)
    seconds = max(spectrum.seconds, 1e-9)

    def column(t: float) -> int:
        return min(WIDTH - 1, max(0, int((t - t0) / seconds * WIDTH)))

    score, level = np.zeros(WIDTH), np.full(WIDTH, LEVEL_FLOOR_DBFS)
    filled = np.zeros(WIDTH, bool)
    for window in scores:  # the highest of the windows ending in a column
        c = column(window.t)
        score[c], level[c], filled[c] = max(score[c], window.score), max(level[c], window.level_dbfs), True
    # a column narrower than the hop holds no window end: it shows the window that covers it, the next one
    following = np.minimum.accumulate(np.where(filled, np.arange(WIDTH), WIDTH)[::-1])[::-1]
    score, level = (np.append(v, v[-1])[following] for v in (score, level))
    heights = np.arange(STRIP, 0, -1)[:, None]  # a strip's rows, top first: a pixel is lit when the value reaches it

    def strip(fraction: np.ndarray, colour: int) -> np.ndarray:
        rows = np.where(heights <= np.round(fraction * STRIP), colour, BACKGROUND).astype(np.uint8)
        rows[rows[:, column(start_t)] == BACKGROUND, column(start_t)] = MARK
        return rows

    gap = np.full((1, WIDTH), BACKGROUND, np.uint8)
    pixels = np.vstack([(shade * (SHADES - 1)).round().astype(np.uint8), gap, strip(score, SCORE), gap,
                        strip((level - LEVEL_FLOOR_DBFS) / -LEVEL_FLOOR_DBFS, LEVEL)])
    return png_indexed(pixels, PALETTE)


class CryPictureSink(Sink):
    """Draws each cry from ``lookback_seconds`` before its start to its end and hands the PNG to ``publish``.

    It works from what every sink is given (window scores, then events, then the chunk), so the daemon and
    ``replay --publish`` draw alike. Audio times are sample counts of the chunks seen: the ``cry_end`` of a
    chunk comes before the chunk itself, so the picture is finished at the next chunk (or at :meth:`close`)."""

    def __init__(self, lookback_seconds: float, publish: Callable[[bytes], None]) -> None:
        self.lookback, self.publish = round(lookback_seconds * SAMPLE_RATE), publish
        self._seen = 0  # samples seen: the audio clock
        self._recent = np.zeros(0, np.float32)  # the last `lookback` of them
        self._recent_scores: deque[WindowScore] = deque()
        self._spectrum: Spectrum | None = None  # a cry being drawn
        self._scores: list[WindowScore] = []
        self._next = 0  # the next sample to draw
        self._end: int | None = None  # where the picture ends, once the cry has ended
        self._first, self._start_t = 0, 0.0

    def scores(self, scores: list[WindowScore]) -> None:
        if self._spectrum is not None:
            self._scores += [s for s in scores if self._end is None or s.t * SAMPLE_RATE <= self._end]
            return
        # what a cry_start of this chunk can reach back to: lookback before its first window
        while self._recent_scores and self._recent_scores[0].t < scores[0].t - self.lookback / SAMPLE_RATE:
            self._recent_scores.popleft()
        self._recent_scores.extend(scores)

    def cry_event(self, emitted: Emitted) -> None:
        t = round(emitted.event.t, 3)  # its published time, to the millisecond
        if emitted.event.type == "cry_end":
            if self._spectrum is not None:
                self._end = round(t * SAMPLE_RATE)
                if self._seen >= self._end:
                    self._finish()
            return
        if self._spectrum is not None:  # the last cry ended in this same chunk: draw it with what came
            self._finish()
        begin = max(0, round(t * SAMPLE_RATE) - self.lookback)
        self._spectrum, self._start_t = Spectrum(), t
        self._scores = [s for s in self._recent_scores if s.t * SAMPLE_RATE >= begin]
        self._next = self._first = max(begin, self._seen - self._recent.size)
        self._draw(self._recent, self._seen - self._recent.size)

    def audio(self, chunk: np.ndarray) -> None:
        start, self._seen = self._seen, self._seen + chunk.size
        if self._spectrum is not None:
            self._draw(chunk, start)
            if self._end is not None and self._seen >= self._end:
                self._finish()
        recent = np.concatenate([self._recent, chunk])
        self._recent = recent[max(0, recent.size - self.lookback):]

    def close(self) -> None:
        if self._spectrum is not None:
            self._finish()

    def _draw(self, samples: np.ndarray, first: int) -> None:
        """Samples whose first has index ``first``: the part of them after what is drawn and before the end."""
        stop = first + samples.size if self._end is None else min(first + samples.size, self._end)
        if stop > self._next:
            self._spectrum.add(samples[self._next - first : stop - first])
            self._next = stop

    def _finish(self) -> None:
        spectrum, self._spectrum, self._end = self._spectrum, None, None
        if spectrum.frames:
            self.publish(render(spectrum, self._scores, self._first / SAMPLE_RATE, self._start_t))
