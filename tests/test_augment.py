"""The detector's augmentation (monitor/training/augment.py): SpecAugment's stripes and mixup's blends."""

import numpy as np
import torch

from monitor.training.augment import mixup, spec_augment


def test_spec_augment_zeroes_whole_time_and_mel_stripes_and_nothing_else():
    torch.manual_seed(0)
    out = spec_augment(torch.ones(16, 1, 100, 64))
    assert out.shape == (16, 1, 100, 64) and set(out.unique().tolist()) <= {0.0, 1.0}
    for example in out[:, 0]:
        masked = example == 0
        frames, bins = masked.all(dim=1), masked.all(dim=0)
        assert torch.equal(masked, frames[:, None] | bins[None, :])  # every zero is in a masked frame or bin
        assert frames.sum() <= 2 * 9 and bins.sum() <= 2 * 7  # two stripes each, under 10 frames and 8 bins


def test_mixup_blends_each_example_and_its_target_with_the_same_weight():
    logmel = torch.stack([torch.full((5, 4), float(i)) for i in range(8)])  # example i is all i ...
    y = torch.arange(8, dtype=torch.float32)  # ... and so is its target
    mixed, target = mixup(logmel, y, np.random.default_rng(0))
    assert mixed.shape == logmel.shape and target.shape == y.shape
    assert torch.all(mixed == mixed[:, :1, :1])  # each still one value: a blend of two whole examples
    torch.testing.assert_close(mixed[:, 0, 0], target)  # the target blended as its example was
    assert 0 <= target.min() and target.max() <= 7 and not torch.equal(target, y)
