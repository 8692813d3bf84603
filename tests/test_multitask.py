"""The metadata-enhanced multi-task design (monitor/inference/models/multitask.py)."""

from __future__ import annotations

import torch

from monitor.inference.models import build


def test_multitask_predicts_the_auxiliary_tasks_and_names_what_stage_two_freezes():
    net = build("cnn14-mha-multitask", num_classes=5, widths=(16, 32, 64, 128, 256, 512)).eval()
    reason, sex, age = net.all_logits(torch.randn(3, 64, 64))
    assert (reason.shape, sex.shape, age.shape) == ((3, 5), (3, 2), (3, 5))
    assert net.embed(torch.randn(3, 64, 64)).shape == (3, 512 + 128 + 2 * 64)
    assert net.lowest_layers() == [net.bn0, net.blocks[0], net.blocks[1]]
