"""PANNs CNN10 with one cry logit (monitor/inference/models/cnn10.py): its size and shapes."""

import pytest
import torch

from monitor.inference.models.cnn10 import Cnn10


def test_cnn10_parameter_count_matches_panns_with_one_logit():
    # PANNs Cnn10 with K=2 has 4,949,954 trainable parameters (../shared/docs/models.md §2.3); one logit
    # removes one row of the 512→K head (512 weights + 1 bias).
    model = Cnn10()
    assert sum(p.numel() for p in model.parameters()) == 4_949_954 - 513
    assert sum(p.numel() for p in model.frontend.parameters()) == 0  # the front end is fixed, not learned


@pytest.mark.parametrize("samples", [2400, 16000, 40000])
def test_cnn10_shapes(samples):
    model = Cnn10().eval()
    with torch.no_grad():
        assert model(torch.randn(2, samples)).shape == (2,)
        assert Cnn10(num_classes=3).eval()(torch.randn(2, samples)).shape == (2, 3)
