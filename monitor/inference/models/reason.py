"""The shipped reason classifier: front end + a registered backbone + a calibration temperature, as one module.

Input is the shared log-mel (B, T, 64) of :class:`monitor.inference.models.logmel.LogMel`, so the daemon reuses the detector's
front end and training and inference cannot disagree. ``frontend="mfcc"`` (the default for the channels-first
backbones) gives them 13 CMVN-normalised MFCC from :class:`monitor.inference.models.mfcc.Mfcc` (statistics stored as
buffers, set from the training folds); ``frontend="logmel"`` gives them the 64 log-mel bins instead (channels
first, the backbone built with ``in_channels=64``). ``cnn14-*`` always take the log-mel itself (their ``bn0``
normalises it). Logits are divided by ``temperature`` (fitted on validation
folds), so ``softmax(model(x))`` is the calibrated probability.

``metadata=True`` is the pre-hoc design (TBDM-Net's gender-informed variant): the baby's sex and age band
(:func:`monitor.core.baby.metadata_vector`, zeros where unknown) pass a small embedding that is concatenated to the
backbone's embedding before its head, which is widened for it. :meth:`ReasonNet.classify` returns the calibrated
logits *and* that embedding: the per-baby adaptation (:mod:`monitor.core.adaptation`) works on the embedding.

Example:
    >>> import torch
    >>> ReasonNet("ecapa", channels=32)(torch.zeros(2, 300, 64)).shape
    torch.Size([2, 5])
    >>> logits, embedding = ReasonNet("tbdm", metadata=True).eval().classify(torch.zeros(1, 300, 64), torch.ones(1, 7))
    >>> logits.shape, embedding.shape
    (torch.Size([1, 5]), torch.Size([1, 29]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monitor.core.baby import METADATA_SIZE
from monitor.core.events import REASONS
from monitor.inference.features import N_MELS
from monitor.inference.models.mfcc import Mfcc

METADATA_EMBEDDING = 16


class ReasonNet(nn.Module):
    def __init__(self, backbone: str = "ietma", classes: Sequence[str] = REASONS, frontend: str = "mfcc",
                 metadata: bool = False, **backbone_kwargs: object) -> None:
        super().__init__()
        from monitor.inference.models import build  # the registry imports this module

        if frontend not in ("mfcc", "logmel"):
            raise ValueError(f"unknown front end {frontend!r}; known: mfcc, logmel")
        self.classes = tuple(classes)
        self.takes_logmel = backbone.startswith("cnn14")
        self.uses_metadata = metadata
        self.frontend = "logmel" if self.takes_logmel else frontend
        self.mfcc = Mfcc()
        if self.frontend == "logmel" and not self.takes_logmel and backbone != "resnet18":
            backbone_kwargs = {"in_channels": N_MELS, **backbone_kwargs}
        self.backbone = build(backbone, num_classes=len(self.classes), **backbone_kwargs)
        if metadata:
            head = getattr(self.backbone, "head", None)
            if not isinstance(head, nn.Linear):
                raise ValueError(f"backbone {backbone!r} has no linear head to widen for metadata")
            self.metadata_embedding = nn.Sequential(nn.Linear(METADATA_SIZE, METADATA_EMBEDDING), nn.ReLU())
            self.backbone.head = nn.Linear(head.in_features + METADATA_EMBEDDING, head.out_features)
        self.register_buffer("temperature", torch.ones(()))

    def features(self, logmel: torch.Tensor) -> torch.Tensor:
        if self.takes_logmel:
            return logmel
        if self.frontend == "logmel":
            return logmel.transpose(-1, -2)
        return self.mfcc.from_logmel(logmel)

    def embed(self, logmel: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        """The vector the head reads, (B, D); ``metadata`` (B, METADATA_SIZE) only with ``metadata=True``
        (``None``: unknown)."""
        embedding = self.backbone.embed(self.features(logmel))
        if not self.uses_metadata:
            return embedding
        if metadata is None:
            metadata = torch.zeros(len(logmel), METADATA_SIZE, dtype=logmel.dtype, device=logmel.device)
        return torch.cat([embedding, self.metadata_embedding(metadata)], dim=1)

    def uncalibrated(self, logmel: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        return self.backbone.logits(self.embed(logmel, metadata))

    def classify(self, logmel: torch.Tensor, metadata: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated logits and the embedding, in one pass."""
        embedding = self.embed(logmel, metadata)
        return self.backbone.logits(embedding) / self.temperature, embedding

    def forward(self, logmel: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        return self.uncalibrated(logmel, metadata) / self.temperature
