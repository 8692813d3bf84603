"""The cry-reason architectures by name, each built once per process, and random inputs in each one's layout."""

from __future__ import annotations

import functools

import torch
from torch import nn

from monitor.inference.models import build

# name → (input layout, shortest input length it accepts or that we promise)
REASON_MODELS = {
    "ietma": ("mfcc", 3),
    "ietma-paper": ("mfcc", 3),
    "ietma-no-mca": ("mfcc", 3),
    "ietma-no-rse": ("mfcc", 3),
    "ietma-no-diffattn": ("mfcc", 3),
    "ecapa": ("mfcc", 5),
    "resnet18": ("mfcc", 8),
    "cnn14-stat": ("logmel", 32),
    "cnn14-mha": ("logmel", 32),
    "tbdm": ("mfcc", 1),
    "cnn14-mha-multitask": ("logmel", 32),
}


def features(name: str, batch: int, frames: int) -> torch.Tensor:
    layout, _ = REASON_MODELS[name]
    return torch.randn(batch, 13, frames) if layout == "mfcc" else torch.randn(batch, frames, 64)


@functools.cache
def model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build(name).eval()
