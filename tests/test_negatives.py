"""What the detector learns is not a cry (monitor/training/negatives.py): the laugh-like negatives."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def trainer():
    from monitor.training import negatives

    return negatives


def test_laugh_like_negatives_are_short_bursts_at_laugh_rate(trainer):
    rng = np.random.default_rng(0)
    for _ in range(50):
        bursts = trainer.laugh_rhythm(rng)
        assert 3 <= len(bursts) <= 8  # 4–7 per second, the first may start before the window
        assert all(0.05 * 16000 <= length <= 0.16 * 16000 + 1 for _, length in bursts)
    x = trainer.voiced_bursts(np.random.default_rng(1))
    assert x.shape == (16000,) and x.dtype == np.float32
    frames = np.sqrt(np.mean(x.reshape(50, 320) ** 2, axis=1))  # 20 ms frames
    loud = frames > frames.max() / 10
    assert 2 <= np.count_nonzero(np.diff(loud.astype(int)) == 1) + int(loud[0]) <= 8  # separate bursts, not a tone
