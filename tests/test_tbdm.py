"""TBDM-Net (monitor/inference/models/tbdm.py)."""

from __future__ import annotations

import torch

from monitor.inference.models import count_params
from monitor.inference.models.tbdm import TbdmNet, TemporalAwareBlock


def test_tbdm_at_the_papers_39_mfcc_has_the_papers_parameter_count():
    assert count_params(TbdmNet(num_classes=6, in_channels=39)) == 16_821_336  # models.md §3.2: 16.82 M effective
    net = TbdmNet()
    assert [b.gate[1].dilation[0] for b in net.forward_blocks] == [1, 2, 4, 8, 16, 32]
    assert [b.gate[1].in_channels for b in net.backward_blocks] == [13, 26, 52, 104, 208, 416]


def test_tbdm_keeps_the_length_and_reads_both_directions():
    block = TemporalAwareBlock(13, 4).eval()
    assert block(torch.randn(2, 13, 9)).shape == (2, 26, 9)  # 'same' padding, width doubles
    net = TbdmNet().eval()
    x = torch.randn(1, 13, 40)
    with torch.no_grad():  # the backward stream reads the reversed input, so reversing the input changes the output
        assert not torch.allclose(net(x), net(x.flip(-1)))
