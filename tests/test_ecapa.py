"""The ECAPA-TDNN baseline (monitor/inference/models/ecapa.py), sized as SpeechBrain's (../shared/docs/models.md
§4)."""

from __future__ import annotations

import pytest
import torch

from monitor.inference.models import count_params
from monitor.inference.models.ecapa import EcapaTdnn, additive_angular_margin


def test_ecapa_matches_speechbrain_sizes_with_the_cosine_head():
    # models.md §4: 0.72 M (C=128, 13 MFCC), 6.02 M (C=512, 13 MFCC), 0.85 M (C=144), all with a 6-class cosine head.
    assert count_params(EcapaTdnn(head="cosine")) == 721_840
    assert count_params(EcapaTdnn(head="cosine")) == pytest.approx(0.72e6, rel=0.01)
    assert count_params(EcapaTdnn(channels=512, head="cosine")) == pytest.approx(6.02e6, rel=0.005)
    assert count_params(EcapaTdnn(channels=144, head="cosine")) == pytest.approx(0.85e6, rel=0.005)
    cosines = EcapaTdnn(head="cosine").eval()(torch.randn(2, 13, 50))
    assert cosines.abs().max() <= 1.0 + 1e-6


def test_additive_angular_margin():
    cosine = torch.tensor([[0.6, 0.1, -0.3], [-0.99, 0.5, 0.2]])
    logits = additive_angular_margin(cosine, torch.tensor([0, 0]), margin=0.2, scale=30.0)
    theta = torch.acos(torch.tensor(0.6))
    assert logits[0, 0] == pytest.approx(30 * float(torch.cos(theta + 0.2)), abs=1e-4)
    assert torch.allclose(logits[:, 1:], 30 * cosine[:, 1:])  # non-target classes keep their cosine
    # cos θ = −0.99 ≤ cos(π − 0.2): θ + m would pass π, so SpeechBrain's linear fallback applies
    assert logits[1, 0] == pytest.approx(30 * (-0.99 - 0.2 * float(torch.sin(torch.tensor(torch.pi - 0.2)))), abs=1e-4)
