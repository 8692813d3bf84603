"""CNN10 in streaming form: the detector's body runs once per frame of the stream, whatever the hop.

Scoring overlapping 1 s windows repeats the same convolutions for every window: at a 0.25 s hop, four times.
This is CNN10 (same blocks, widths, head and parameter count as :class:`~monitor.inference.models.cnn10.Cnn10`) changed
only where windows and a stream would disagree:

- the log-mel has no centre padding (frame ``i`` is samples ``[160 i, 160 i + 512)``);
- the convolutions are *valid* in time (no zero padding; frequency keeps its padding), so a frame's features
  depend on audio only, never on where a window was cut;
- the last block pools frequency only, so the body emits one 512-d frame embedding per 80 ms (``FRAME`` =
  1280 samples = 8 log-mel frames, the product of the time pooling strides);
- a window's score is the head (``max_t + mean_t``, ``fc1``, logit) over its last ``window_frames`` embeddings.

A window of ``window_samples`` samples (15,072 = 0.94 s for 4 embeddings: 4 × 8 frames plus the 60 frames of
context the valid convolutions eat) then holds exactly the frames the stream computed for it, if it starts on the
80 ms grid of the stream. :class:`Stream` scores the stream incrementally: each layer keeps the few input frames
its next output needs (4 for two 3-tap convolutions, plus 1 left unpaired by a pooling), so chunks of any size,
from one sample up, give the same scores as scoring each window alone (``tests/test_streaming_cnn10.py`` holds them
to 1e-4 on real audio), at the cost of one pass over the audio.

Example:
    >>> import numpy as np, torch
    >>> model = StreamingCnn10().eval()
    >>> model.window_samples, model(torch.zeros(2, model.window_samples)).shape
    (15072, torch.Size([2]))
    >>> stream = model.stream()
    >>> ends, logits = stream.push(np.zeros(model.window_samples + 2 * FRAME, dtype=np.float32))
    >>> ends.tolist(), logits.shape
    ([15072, 16352, 17632], (3,))
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from monitor.inference.features import AMIN, HOP, N_FFT, N_MELS
from monitor.inference.models.cnn10 import Cnn10, ConvBlock, xavier_init
from monitor.inference.models.logmel import LogMel

FRAME = 8 * HOP  # samples per frame embedding: three 2× time poolings of 10 ms log-mel frames → 80 ms
CONTEXT = 4  # input frames two valid 3-tap convolutions consume per block
MAX_PUSH = 4 * 16000  # longer pushes are scored in pieces, so memory does not grow with the chunk


class StreamingCnn10(Cnn10):
    """Waveform (B, N ≥ ``window_samples``) → cry logits (B,) for the window ending at the last sample; or,
    through :meth:`stream`, logits for every 80 ms of a stream."""

    def __init__(self, num_classes: int = 1, n_mels: int = N_MELS, widths: tuple[int, ...] = (64, 128, 256, 512),
                 window_frames: int = 4) -> None:
        super().__init__(num_classes, n_mels, widths)
        self.window_frames = window_frames
        self.frontend = LogMel(n_mels, center=False)
        channels = (1, *widths)
        pools = [(2, 2)] * (len(widths) - 1) + [(1, 2)]
        self.blocks = nn.ModuleList(ConvBlock(a, b, pool, time_padding=0)
                                    for a, b, pool in zip(channels[:-1], channels[1:], pools))
        xavier_init(self)

    @property
    def window_logmel_frames(self) -> int:
        """Log-mel frames one window needs: undo each block's valid convolutions and pooling, last block first."""
        frames = self.window_frames
        for block in reversed(self.blocks):
            frames = frames * block.pool[0] + CONTEXT
        return frames

    @property
    def window_samples(self) -> int:
        return N_FFT + HOP * (self.window_logmel_frames - 1)

    def window_logmel(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.shape[-1] < self.window_samples:
            raise ValueError(f"a window needs {self.window_samples} samples, got {waveform.shape[-1]}")
        return self.frontend(waveform[..., -self.window_samples :])

    def stream(self) -> Stream:
        return Stream(self)


class Stream:
    """Incremental scoring of one audio stream by an eval-mode :class:`StreamingCnn10`.

    ``push(samples)`` returns ``(ends, logits)`` as numpy arrays: for every window completed by these samples, the
    sample index (from the stream's start) where it ends and its logit. Windows end at ``model.window_samples +
    k * FRAME``.
    """

    def __init__(self, model: StreamingCnn10) -> None:
        if model.training:
            raise ValueError("stream() needs a model in eval mode (dropout and batch statistics are per window)")
        self.model = model
        self._samples = np.zeros(0, dtype=np.float32)  # audio not yet in a complete log-mel frame
        self._pending: list[torch.Tensor | None] = [None] * len(model.blocks)  # each block's unused input frames
        self._recent: torch.Tensor | None = None  # the last window_frames - 1 frame embeddings (1, C, T)
        self._embeddings = 0  # frame embeddings produced so far

    @torch.inference_mode()
    def push(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ends, logits = [], []
        for begin in range(0, max(samples.size, 1), MAX_PUSH):
            e, l = self._push(np.asarray(samples[begin : begin + MAX_PUSH], dtype=np.float32))
            ends.append(e)
            logits.append(l)
        return np.concatenate(ends), torch.cat(logits).numpy()

    def _push(self, samples: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        model = self.model
        audio = np.concatenate([self._samples, samples])
        frames = 0 if audio.size < N_FFT else 1 + (audio.size - N_FFT) // HOP
        self._samples = audio[frames * HOP :]
        if not frames:
            return np.zeros(0, dtype=np.int64), torch.zeros(0)
        logmel = model.frontend(torch.from_numpy(audio[: N_FFT + HOP * (frames - 1)])[None])  # (1, frames, mels)
        x = model.bn0(logmel.unsqueeze(1).transpose(1, 3)).transpose(1, 3)  # (1, 1, T, mels)
        for i, block in enumerate(model.blocks):
            x = self._block(i, block, x)
        embeddings = x.mean(dim=3)  # (1, C, new frames)
        if self._recent is not None:
            embeddings = torch.cat([self._recent, embeddings], dim=2)
        k = model.window_frames
        first = self._embeddings - (0 if self._recent is None else self._recent.shape[2])  # index of embeddings[0]
        self._embeddings = first + embeddings.shape[2]
        self._recent = embeddings[:, :, -(k - 1) :] if k > 1 else None
        if embeddings.shape[2] < k:
            return np.zeros(0, dtype=np.int64), torch.zeros(0)
        windows = embeddings.unfold(2, k, 1)[0].permute(1, 0, 2)  # (windows, C, k)
        last = first + k - 1 + np.arange(windows.shape[0])  # index of each window's newest embedding
        ends = model.window_samples + (last - (k - 1)) * FRAME
        return ends.astype(np.int64), model.classify_frames(windows).reshape(-1)

    def _block(self, i: int, block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
        """One block over its new input frames, keeping what its next output needs: ``CONTEXT`` frames, and one
        more when a time pooling is left with an unpaired frame (recomputed next time, so pairs never shift)."""
        if self._pending[i] is not None:
            x = torch.cat([self._pending[i], x], dim=2)
        stride = block.pool[0]
        usable = (x.shape[2] - CONTEXT) // stride * stride  # conv outputs that complete a pooling pair
        if usable <= 0:
            self._pending[i] = x
            return x.new_zeros(1, block.conv2.out_channels, 0, x.shape[3] // block.pool[1])
        self._pending[i] = x[:, :, usable:]
        return F.avg_pool2d(block.convolve(x[:, :, : usable + CONTEXT]), block.pool)


class FrameStep(nn.Module):
    """Whole 80 ms steps of a :class:`StreamingCnn10` stream as a pure function, the form exported to ONNX.

    Inputs: the samples of ``n ≥ 1`` steps (``STEP_SAMPLES + (n − 1) · FRAME``: their ``8 n`` log-mel frames), each
    convolution's last two input frames and the last ``window_frames − 1`` frame embeddings. Outputs: the logits
    of the ``n`` windows that end with these steps' embeddings, then the new state. Every step feeds each pooling
    whole pairs, so ``n`` steps at once equal ``n`` single steps and nothing is computed twice; a live stream runs
    the one or two steps each 0.1 s completes, a replay dozens per call. The log-mel is a strided convolution with
    a windowed DFT basis rather than an FFT, so the graph needs no spectral operator and ``n`` can vary.
    :class:`monitor.inference.onnx_runtime.OnnxStream` drives it.
    """

    def __init__(self, model: StreamingCnn10) -> None:
        super().__init__()
        self.model = model
        n = torch.arange(N_FFT, dtype=torch.float64)
        angle = 2 * torch.pi * n[:, None] * torch.arange(N_FFT // 2 + 1, dtype=torch.float64)[None] / N_FFT
        window = model.frontend.mel.spectrogram.window.double()[:, None]
        basis = torch.cat([window * torch.cos(angle), window * torch.sin(angle)], dim=1)  # (512, 2 · 257)
        self.register_buffer("dft", basis.T.unsqueeze(1).float())  # conv1d kernels (2 · 257, 1, 512)
        self.register_buffer("filterbank", model.frontend.mel.mel_scale.fb.clone())

    def state_shapes(self) -> list[tuple[int, ...]]:
        """Shapes (batch 1) of the two input frames each convolution keeps, then of the recent embeddings."""
        shapes, mels = [], self.filterbank.shape[1]
        for i, block in enumerate(self.model.blocks):
            shapes.append((1, block.conv1.in_channels, 2, mels >> i))
            shapes.append((1, block.conv2.in_channels, 2, mels >> i))
        return [*shapes, (1, self.model.blocks[-1].conv2.out_channels, self.model.window_frames - 1)]

    def forward(self, samples: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        spectrum = F.conv1d(samples[None, None], self.dft, stride=HOP)[0]  # (2 · 257, 8 n)
        bins = self.filterbank.shape[0]
        power = (spectrum[:bins] ** 2 + spectrum[bins:] ** 2).T  # (8 n, 257)
        logmel = 10.0 * torch.log10(torch.clamp(power @ self.filterbank, min=AMIN))
        x = model.bn0(logmel[None, None].transpose(1, 3)).transpose(1, 3)  # (1, 1, 8 n, mels)
        kept = []
        for i, block in enumerate(model.blocks):
            for j, (conv, norm) in enumerate(((block.conv1, block.bn1), (block.conv2, block.bn2))):
                x = torch.cat([state[2 * i + j], x], dim=2)
                kept.append(x[:, :, -2:])
                x = F.relu(norm(conv(x)))
            x = F.avg_pool2d(x, block.pool)
        embeddings = torch.cat([state[-1], x.mean(dim=3)], dim=2)  # (1, C, window_frames − 1 + n)
        k = model.window_frames
        steps = embeddings.shape[2] - (k - 1)
        windows = torch.stack([embeddings[0, :, i : i + steps] for i in range(k)], dim=2)  # (C, n, k)
        return model.classify_frames(windows.permute(1, 0, 2)), *kept, embeddings[:, :, -(k - 1) :]
