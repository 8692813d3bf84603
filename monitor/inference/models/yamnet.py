"""YAMNet: Google's AudioSet sound classifier (MobileNet-v1 on a 96 × 64 log-mel patch, 521 sigmoid outputs), as a
torch module whose weights come from the released ``yamnet.tflite`` (:mod:`monitor.training.yamnet_import`).

The front end is YAMNet's own, not ours: 25 ms periodic-Hann frames every 10 ms (400 samples, zero-padded on both
sides to a 512-point DFT), magnitude spectrum, 64 HTK mel bands 125–7500 Hz, ``log(mel + 0.001)``. Its window, DFT and mel
matrices are buffers read from the same file. Built with the file's weight scales the module computes what the
file's own kernels compute: on 300 held-out clips of every category, scores within 1.2e-7 and log-mel equal to the
bit (``tests/test_yamnet.py`` holds 24 clips to 1e-4). That takes every float before an int8 rounding to be the
same to the bit, or a value on a rounding tie moves a whole step: so :func:`hybrid`'s order of operations,
:func:`tap_by_tap`, a correctly rounded square root and the C library's ``logf``.

The body follows the file's graph: a 3×3 stride-2 convolution, 13 depthwise-separable blocks (depthwise 3×3, then
pointwise 1×1; batch norm folded into the convolutions' biases by the converter; ReLU), a global average pool
to the 1024-d embedding and a dense layer to 521 logits. TensorFlow's ``SAME`` padding is asymmetric for a
stride of 2 on an even size (0 before, 1 after); :func:`_same_pad` reproduces it.

Streaming form: the log-mel frames are shared between hops, the convolutions are not. A frame depends only on its
own 400 samples, so :meth:`YamnetCry.score_span` computes each frame of a stretch of audio once and cuts every
window's 96-frame patch from them (windows that start on the 10 ms frame grid), which equals scoring each window on
its own exactly. The convolutions cannot be shared: each window's are zero-padded at its own edges ("SAME"), and
the top layers see 315 log-mel frames (3.15 s) of context, so a frame of a feature map depends on where the window
was cut. The streaming trick of :mod:`monitor.inference.models.streaming_cnn10` (convolutions valid in time) would
change what the released weights compute and need 3.15 s of audio per output, about 1.1 s more delay before a cry
can be called. So each window pays one pass of the network (``tools/bench_detector.py``).

Example:
    >>> import torch
    >>> model = Yamnet().eval()
    >>> model(torch.zeros(2, PATCH_SAMPLES)).shape, model.embed(torch.zeros(1, PATCH_SAMPLES)).shape
    (torch.Size([2, 521]), torch.Size([1, 1024]))
    >>> YamnetCry().eval()(torch.zeros(3, 16000)).shape
    torch.Size([3])
    >>> logits, embeddings = YamnetCry().eval().score_span(torch.zeros(20000), torch.tensor([0, 24]))
    >>> logits.shape, embeddings.shape
    (torch.Size([2]), torch.Size([2, 1024]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WINDOW = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
DFT = 512
MELS = 64
PATCH_FRAMES = 96  # 0.96 s of frames, the patch the classifier sees
PATCH_SAMPLES = WINDOW + HOP * (PATCH_FRAMES - 1)  # 15,600 samples (0.975 s): the TFLite file's input
CLASSES = 521
CRY_CLASS = 20  # "Baby cry, infant cry" in yamnet_class_map.csv
# (output channels, stride) of the 14 layers: layer 1 a full 3×3 conv, layers 2-14 depthwise-separable
LAYERS = ((32, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def hybrid(x: torch.Tensor, weight: torch.Tensor, weight_scale: float, bias: torch.Tensor | None, apply,
           per_row: bool) -> torch.Tensor:
    """What a TFLite hybrid (dynamic-range) kernel computes for a float input and int8 weights ``weight /
    weight_scale``: the input rounded to int8 with one scale per row (fully connected) or per batch item
    (convolution), ``round(x · (127 / peak))`` half away from zero as ``std::round``; the int32 sum of products
    ``apply(q, q_weight)`` (exact here: integers in float64); then ``sum · (peak / 127 · weight_scale) + bias`` in
    float32, in that order. Only :class:`Yamnet` built with ``weight_scales`` (the file's) uses it."""
    dims = -1 if per_row else tuple(range(1, x.dim()))
    peak = x.abs().amax(dim=dims, keepdim=True)
    nonzero = peak > 0
    safe = torch.where(nonzero, peak, torch.ones_like(peak))
    scaled = x * (127 / safe.double()).float()  # correctly rounded, as C++'s; torch's float 127 / t is not
    whole = torch.trunc(scaled)  # std::round, half away from zero (floor(|x| + 0.5) rounds 2.4999998 up)
    rounded = whole + torch.sign(scaled) * ((scaled - whole).abs() >= 0.5)
    q = torch.where(nonzero, rounded, torch.zeros_like(scaled))
    total = apply(q.double(), torch.round(weight.double() / weight_scale)).float()
    out = total * (torch.where(nonzero, safe / 127, torch.ones_like(safe)) * torch.tensor(weight_scale))
    return out if bias is None else out + bias


def tap_by_tap(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int, bias_first: bool) -> torch.Tensor:
    """A 3×3 float convolution of one input channel per output channel (the first layer: one for all; depthwise:
    its own) summed as TFLite's float kernels sum it: tap by tap, row by row, each product and sum rounded to
    float32, the bias first (depthwise) or last (the first layer). ``x`` is already padded. Any other order
    differs in the last bit, which an int8 rounding after it can turn into a whole step."""
    rows, cols = (x.shape[2] - 3) // stride + 1, (x.shape[3] - 3) // stride + 1
    total = bias.view(1, -1, 1, 1).expand(x.shape[0], -1, rows, cols) if bias_first else None
    for ky in range(3):
        for kx in range(3):
            tap = weight[:, 0, ky, kx].view(1, -1, 1, 1) * x[:, :, ky : ky + stride * (rows - 1) + 1 : stride,
                                                              kx : kx + stride * (cols - 1) + 1 : stride]
            total = tap if total is None else total + tap
    return total if bias_first else total + bias.view(1, -1, 1, 1)


def _same_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TensorFlow's ``SAME`` padding of a 3×3 kernel on (B, C, T, F): total ``max(3 - stride, 0)`` for sizes divisible
    by the stride, the smaller half first."""
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad lists the last dimension first
        total = max(3 - stride, 0) if size % stride == 0 else max(3 - size % stride, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class YamnetFrontEnd(nn.Module):
    """Waveform (B, N ≥ 400) → YAMNet's log-mel (B, frames, 64), frame ``i`` from samples ``[160 i, 160 i + 400)``."""

    def __init__(self, weight_scales: dict[str, float] | None = None) -> None:
        super().__init__()
        self.weight_scales = weight_scales
        self.register_buffer("window", torch.zeros(WINDOW))
        self.register_buffer("dft_real", torch.zeros(DFT // 2 + 1, DFT))
        self.register_buffer("dft_imag", torch.zeros(DFT // 2 + 1, DFT))
        self.register_buffer("mel", torch.zeros(MELS, DFT // 2 + 1))
        self.register_buffer("mel_offset", torch.zeros(MELS))  # log(mel + 0.001): the file adds it as a bias

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        count = (waveform.shape[-1] - WINDOW) // HOP + 1
        index = torch.arange(count, device=waveform.device)[:, None] * HOP + torch.arange(WINDOW, device=waveform.device)
        frames = waveform[..., index] * self.window  # a gather, not unfold: the ONNX exporter mis-shapes unfold
        frames = F.pad(frames, ((DFT - WINDOW) // 2, (DFT - WINDOW) // 2))  # centred, as the file pads
        if self.weight_scales is not None:
            scales = self.weight_scales
            real = hybrid(frames, self.dft_real, scales["frontend.dft_real"], None, _times_transposed, per_row=True)
            imag = hybrid(frames, self.dft_imag, scales["frontend.dft_imag"], None, _times_transposed, per_row=True)
            # TFLite's SQRT is correctly rounded (torch's float32 sqrt is not, on AVX-512), and its LOG is the C
            # library's logf (glibc's is off by one in the last bit for 0.3 % of values against the correctly
            # rounded log)
            magnitude = torch.sqrt((real * real + imag * imag).double()).float()
            return _c_logf(hybrid(magnitude, self.mel, scales["frontend.mel"], self.mel_offset, _times_transposed,
                                  per_row=True))
        real, imag = frames @ self.dft_real.T, frames @ self.dft_imag.T
        magnitude = torch.sqrt(real * real + imag * imag)
        return torch.log(magnitude @ self.mel.T + self.mel_offset)


def _c_logf(x: torch.Tensor) -> torch.Tensor:
    """``logf`` of the C library, element by element (slow: the TFLite emulation only)."""
    import ctypes
    import ctypes.util

    import numpy as np

    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.logf.restype, libm.logf.argtypes = ctypes.c_float, [ctypes.c_float]
    values = x.detach().cpu().numpy()
    return torch.from_numpy(np.vectorize(libm.logf, otypes=[np.float32])(values)).to(x.device)


def _times_transposed(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x @ weight.T


class SeparableBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, pointwise_scale: float | None = None) -> None:
        super().__init__()
        self.stride, self.pointwise_scale = stride, pointwise_scale
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pointwise_scale is None:
            return F.relu(self.pointwise(F.relu(self.depthwise(_same_pad(x, self.stride)))))
        x = F.relu(tap_by_tap(_same_pad(x, self.stride), self.depthwise.weight, self.depthwise.bias, self.stride,
                              bias_first=True))
        return F.relu(hybrid(x, self.pointwise.weight, self.pointwise_scale, self.pointwise.bias[:, None, None],
                             F.conv2d, per_row=False))


class Yamnet(nn.Module):
    """Waveform (B, 15,600) at 16 kHz in [-1, 1] → 521 logits (B, 521); ``torch.sigmoid`` gives YAMNet's scores.

    The file is a dynamic-range conversion: int8 weights (one scale per tensor) for the DFT, mel, pointwise and
    dense layers, whose TFLite kernels also round those layers' *inputs* to int8 at run time. Built with the file's
    ``weight_scales`` (``{parameter name: scale}``, :func:`monitor.training.yamnet_import.tflite_weight_scales`),
    the module computes what those kernels compute (:func:`hybrid`), so it equals the file; the default computes
    those layers in float on the same (dequantized) weights, which is what the released float model computed and
    what fine-tuning and ONNX export build on. The rounding matters most on quiet frames (a frame's 8-bit scale
    follows its loudest sample): up to 5 in log-mel there.
    """

    def __init__(self, weight_scales: dict[str, float] | None = None) -> None:
        super().__init__()
        self.weight_scales = weight_scales
        self.frontend = YamnetFrontEnd(weight_scales)
        self.conv1 = nn.Conv2d(1, LAYERS[0][0], 3, LAYERS[0][1])
        self.blocks = nn.ModuleList(
            SeparableBlock(a, b, stride, weight_scales[f"blocks.{i}.pointwise.weight"] if weight_scales else None)
            for i, ((a, _), (b, stride)) in enumerate(zip(LAYERS[:-1], LAYERS[1:])))
        self.dense = nn.Linear(LAYERS[-1][0], CLASSES)

    def trunk(self, logmel: torch.Tensor, blocks: int = len(LAYERS) - 1) -> torch.Tensor:
        """Log-mel patches (B, 96, 64) through layer 1 and the first ``blocks`` separable blocks (all: the last
        layer's map, (B, 1024, 3, 2))."""
        padded = _same_pad(logmel.unsqueeze(1), LAYERS[0][1])
        x = F.relu(self.conv1(padded) if self.weight_scales is None else
                   tap_by_tap(padded, self.conv1.weight, self.conv1.bias, LAYERS[0][1], bias_first=False))
        for block in self.blocks[:blocks]:
            x = block(x)
        return x

    def top(self, x: torch.Tensor, first_block: int) -> torch.Tensor:
        """The rest of the network from block ``first_block``'s input to the 521 logits (fine-tuning trains this
        part on cached :meth:`trunk` outputs)."""
        return self.classify(self.pool(x, first_block))

    def pool(self, x: torch.Tensor, first_block: int) -> torch.Tensor:
        """From block ``first_block``'s input to the 1024-d embedding (B, 1024): the mean of the last map."""
        for block in self.blocks[first_block:]:
            x = block(x)
        return x.mean(dim=(2, 3))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """The 521 logits of embeddings (B, 1024)."""
        if self.weight_scales is None:
            return self.dense(embedding)
        return hybrid(embedding, self.dense.weight, self.weight_scales["dense.weight"], self.dense.bias,
                      _times_transposed, per_row=True)

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """The 1024-d embedding (B, 1024) of each 0.975 s waveform."""
        return self.trunk(self.frontend(waveform[..., -PATCH_SAMPLES:])).mean(dim=(2, 3))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.top(self.trunk(self.frontend(waveform[..., -PATCH_SAMPLES:])), len(self.blocks))


class YamnetCry(Yamnet):
    """YAMNet as a window-form cry detector: the logit of its ``Baby cry, infant cry`` output for the 0.975 s
    window ending at the last sample (B, N ≥ 15,600) → (B,). Same weights as :class:`Yamnet`."""

    window_samples = PATCH_SAMPLES
    frame_samples = HOP  # windows that start on this grid share their log-mel frames (score_span)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return super().forward(waveform)[:, CRY_CLASS]

    def score_and_embed(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cry logit (B,) and the 1024-d embedding it was read from (B, 1024), in one pass: what the daemon
        remembers of a detection that the parents mark "not a cry" (:mod:`monitor.core.home_sounds`)."""
        embedding = self.embed(waveform)
        return self.classify(embedding)[:, CRY_CLASS], embedding

    def score_span(self, audio: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`score_and_embed` of the windows of ``audio`` (N,) that start at log-mel frames ``starts`` (W,)
        (window ``i``: samples ``[160 starts[i], 160 starts[i] + 15,600)``), each log-mel frame computed once."""
        return self.score_patches(span_patches(self.frontend(audio[None])[0], starts))

    def score_patches(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cry logit (W,) and embedding (W, 1024) of log-mel patches (W, 96, 64)."""
        embedding = self.trunk(patches).mean(dim=(2, 3))
        return self.classify(embedding)[:, CRY_CLASS], embedding


def span_patches(frames: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """The 96-frame patches (W, 96, 64) of log-mel ``frames`` (T, 64) that start at ``starts`` (W,): a gather,
    which the ONNX exporter shapes right for any number of windows."""
    return frames[starts[:, None] + torch.arange(PATCH_FRAMES, device=frames.device)]
