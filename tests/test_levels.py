"""The level meter (monitor/core/levels.py)."""

import numpy as np
import pytest

from monitor.core.levels import level_dbfs


def test_level_dbfs():
    t = np.arange(16000) / 16000
    assert level_dbfs(np.sin(2 * np.pi * 440 * t).astype(np.float32)) == pytest.approx(-3.01, abs=0.01)
    assert level_dbfs(np.zeros(100, np.float32)) == -120.0
