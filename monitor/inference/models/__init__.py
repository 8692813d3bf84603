"""Model architectures, selected by name through a registry (never ``eval``), and the size counters used to
report them.

Inputs differ by family: ``cnn10`` and ``cnn10-stream`` take a waveform; ``cnn14-*`` (``cnn14-mha-multitask`` too) take the shared log-mel (B, T, 64);
``ietma*``, ``ecapa``, ``tbdm`` and ``resnet18`` take channels-first features (B, F, T), normally the 13 MFCC of
:class:`monitor.inference.models.mfcc.Mfcc`; ``reason`` is the shipped classifier (front end + one of those backbones +
temperature) and takes the log-mel.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from monitor import SAMPLE_RATE
from monitor.inference.features import HOP
from monitor.inference.models.cnn10 import Cnn10
from monitor.inference.models.cnn14 import Cnn14
from monitor.inference.models.ecapa import EcapaTdnn
from monitor.inference.models.ietma import Ietma
from monitor.inference.models.multitask import MultiTaskCnn14
from monitor.inference.models.reason import ReasonNet
from monitor.inference.models.resnet import ResNet18
from monitor.inference.models.streaming_cnn10 import FRAME, StreamingCnn10
from monitor.inference.models.tbdm import TbdmNet
from monitor.inference.models.yamnet import Yamnet, YamnetCry

REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "cnn10": Cnn10,
    "cnn10-stream": StreamingCnn10,
    "ietma": Ietma,
    "ietma-paper": partial(Ietma, variant="paper"),
    "ietma-no-mca": partial(Ietma, use_mca=False),
    "ietma-no-rse": partial(Ietma, use_rse=False),
    "ietma-no-diffattn": partial(Ietma, use_diff_attention=False),
    "ecapa": EcapaTdnn,
    "resnet18": ResNet18,
    "cnn14-stat": partial(Cnn14, pooling="stat"),
    "cnn14-mha": partial(Cnn14, pooling="mha"),
    "cnn14-mha-multitask": MultiTaskCnn14,
    "tbdm": TbdmNet,
    "reason": ReasonNet,
    "yamnet": Yamnet,
    "yamnet-cry": YamnetCry,
}


def build(arch: str, **kwargs: object) -> nn.Module:
    """Instantiate the architecture registered as ``arch``."""
    try:
        factory = REGISTRY[arch]
    except KeyError:
        raise ValueError(f"unknown model architecture {arch!r}; known: {', '.join(sorted(REGISTRY))}") from None
    return factory(**kwargs)


def count_params(model: nn.Module) -> int:
    """All parameters (our models register no dead layers, so this is the count the forward pass uses)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass, counted for conv and linear layers only.

    A conv costs ``output elements × in_channels/groups × kernel size`` and a linear ``output elements ×
    in_features``, bias excluded: the same rule as thop's ``profile``. thop also charges 4 ops per element of an
    affine BatchNorm and about one per input element of an adaptive average pool (0.6 % extra for IETMA); it skips
    functional ops (matmuls, pooling via ``torch.mean``) just as we do. FLOPs ≈ 2 × MACs.
    """
    total = 0

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, nn.modules.conv._ConvNd):
            total += output.numel() * module.in_channels // module.groups * module.weight[0, 0].numel()

    counted = (nn.Linear, nn.modules.conv._ConvNd)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total


def streamed_macs_per_second(model: nn.Module, hop: int) -> int:
    """Multiply-accumulates per second of 16 kHz audio of a streaming CNN10 scoring a window every ``hop``
    samples: the body once per 80 ms frame (measured as the difference between bodies over 4 and 16 frames'
    worth of log-mel, so the padding-free arithmetic is counted, not assumed) plus the head once per hop."""
    frames, mels = model.window_logmel_frames, model.bn0.num_features
    short, long_ = (count_macs(_Body(model), torch.zeros(1, frames + FRAME // HOP * extra, mels)) for extra in (0, 12))
    head = sum(layer.in_features * layer.out_features for layer in (model.fc1, model.head))
    return round((long_ - short) / 12 * SAMPLE_RATE / FRAME + head * SAMPLE_RATE / hop)


class _Body(nn.Module):
    """A model's layers from log-mel on, for counting them over any number of frames."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.model.forward_logmel(logmel)
