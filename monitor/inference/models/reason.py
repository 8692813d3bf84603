"""The shipped reason classifier: front end + a registered backbone + a calibration temperature, as one module.

Input is the shared log-mel (B, T, 64) of :class:`monitor.inference.models.logmel.LogMel`, so the daemon reuses the detector's
front end and training and inference cannot disagree. ``frontend="mfcc"`` (the default for the channels-first
backbones) gives them 13 CMVN-normalised MFCC from :class:`monitor.inference.models.mfcc.Mfcc` (statistics stored as
buffers, set from the training folds); ``frontend="logmel"`` gives them the 64 log-mel bins instead (channels
first, the backbone built with ``in_channels=64``). ``cnn14-*`` always take the log-mel itself (their ``bn0``
normalises it). Logits are divided by ``temperature`` (fitted on validation
folds), so ``softmax(model(x))`` is the calibrated probability.

Example:
    >>> import torch
    >>> ReasonNet("ecapa", channels=32)(torch.zeros(2, 300, 64)).shape
    torch.Size([2, 5])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monitor.core.events import REASONS
from monitor.inference.features import N_MELS
from monitor.inference.models.mfcc import Mfcc


class ReasonNet(nn.Module):
    def __init__(self, backbone: str = "ietma", classes: Sequence[str] = REASONS, frontend: str = "mfcc",
                 **backbone_kwargs: object) -> None:
        super().__init__()
        from monitor.inference.models import build  # the registry imports this module

        if frontend not in ("mfcc", "logmel"):
            raise ValueError(f"unknown front end {frontend!r}; known: mfcc, logmel")
        self.classes = tuple(classes)
        self.takes_logmel = backbone.startswith("cnn14")
        self.frontend = "logmel" if self.takes_logmel else frontend
        self.mfcc = Mfcc()
        if self.frontend == "logmel" and not self.takes_logmel and backbone != "resnet18":
            backbone_kwargs = {"in_channels": N_MELS, **backbone_kwargs}
        self.backbone = build(backbone, num_classes=len(self.classes), **backbone_kwargs)
        self.register_buffer("temperature", torch.ones(()))

    def features(self, logmel: torch.Tensor) -> torch.Tensor:
        if self.takes_logmel:
            return logmel
        if self.frontend == "logmel":
            return logmel.transpose(-1, -2)
        return self.mfcc.from_logmel(logmel)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.features(logmel)) / self.temperature
