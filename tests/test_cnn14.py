"""The CNN14 body (monitor/inference/models/cnn14.py)."""

from __future__ import annotations

from model_helpers import model
from monitor.inference.models.cnn10 import ConvBlock


def test_cnn14_reuses_cnn10s_conv_block():
    blocks = model("cnn14-stat").blocks
    assert len(blocks) == 6 and all(isinstance(b, ConvBlock) for b in blocks)
    assert [b.conv2.out_channels for b in blocks] == [64, 128, 256, 512, 1024, 2048]
