"""Microphone health (monitor/core/health.py)."""

import numpy as np

from monitor.core.health import MicHealth


def test_mic_health_flags_digital_silence_and_flat_lines_only():
    health = MicHealth(deaf_after_seconds=2.0)
    rng = np.random.default_rng(0)
    room = (rng.standard_normal(1600) * 3e-4).astype(np.float32)  # a quiet room: about -70 dBFS
    changes = [health.update(room, t=0.1 * (i + 1)) for i in range(100)]
    assert set(changes) == {None}
    changes = [health.update(np.full(1600, 0.25, np.float32), t=10 + 0.1 * (i + 1)) for i in range(30)]
    assert changes.index("deaf") == 19 and changes.count("deaf") == 1  # after 2 s of a DC-stuck stream
    assert health.update(room, t=14.0) == "ok"
