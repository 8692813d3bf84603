"""The shipped reason classifier's network (monitor/inference/models/reason.py): backbones and front ends by
name, and the baby's metadata."""

from __future__ import annotations

import pytest
import torch

from monitor.core.baby import metadata_vector
from monitor.core.events import REASONS
from monitor.inference.models import REGISTRY, build, count_params
from monitor.inference.models.reason import ReasonNet


def test_reason_net_registry_shapes_and_size():
    assert "reason" in REGISTRY
    net = build("reason", backbone="ietma")
    assert net(torch.randn(2, 250, 64)).shape == (2, len(REASONS))
    # IETMA's 1,498,674 parameters at 6 classes, less one class's fc row (129) and logit BN (2)
    assert count_params(net.backbone) == 1_498_674 - 129 - 2
    assert build("reason", backbone="cnn14-stat", widths=[8, 16, 32, 64, 128, 256])(torch.randn(1, 120, 64)).shape == (1, 5)


@pytest.mark.parametrize("backbone", ["ietma", "ecapa", "resnet18"])
def test_log_mel_front_end_is_selectable(backbone):
    net = build("reason", backbone=backbone, frontend="logmel")
    logmel = torch.randn(2, 120, 64)
    assert net.features(logmel).shape == (2, 64, 120) and net(logmel).shape == (2, len(REASONS))
    with pytest.raises(ValueError, match="front end"):
        build("reason", backbone=backbone, frontend="spectrogram")


def test_metadata_changes_the_prehoc_model_and_unknown_is_zeros():
    torch.manual_seed(0)
    net = ReasonNet("tbdm", metadata=True).eval()
    x = torch.randn(1, 120, 64)
    with torch.no_grad():
        told, _ = net.classify(x, torch.from_numpy(metadata_vector("f", "2-6m"))[None])
        unknown, embedding = net.classify(x)
        assert not torch.allclose(told, unknown)
    assert embedding.shape == (1, 13 + 16) and net.backbone.head.in_features == 13 + 16
    with pytest.raises(ValueError, match="no linear head"):
        ReasonNet("ietma", metadata=True)
