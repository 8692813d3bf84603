"""Model architectures, selected by name through a registry (never ``eval``)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from monitor.models.cnn10 import Cnn10

REGISTRY: dict[str, Callable[..., nn.Module]] = {"cnn10": Cnn10}


def build(arch: str, **kwargs: object) -> nn.Module:
    """Instantiate the architecture registered as ``arch``."""
    try:
        factory = REGISTRY[arch]
    except KeyError:
        raise ValueError(f"unknown model architecture {arch!r}; known: {', '.join(sorted(REGISTRY))}") from None
    return factory(**kwargs)
