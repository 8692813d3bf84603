import numpy as np
import pytest

from monitor.core.buffer import RingBuffer


def test_wraps_and_reads_by_absolute_index():
    buf = RingBuffer(100)
    data = np.arange(1000, dtype=np.float32)
    for begin in range(0, 1000, 37):
        buf.write(data[begin : begin + 37])
    assert buf.total == 1000 and buf.oldest == 900
    np.testing.assert_array_equal(buf.read(900, 100), data[900:])
    np.testing.assert_array_equal(buf.read(950, 20), data[950:970])


def test_refuses_overwritten_or_future_samples():
    buf = RingBuffer(10)
    buf.write(np.zeros(25, dtype=np.float32))
    with pytest.raises(IndexError):
        buf.read(14, 5)
    with pytest.raises(IndexError):
        buf.read(20, 6)


def test_write_larger_than_capacity_keeps_newest_and_counts_all():
    buf = RingBuffer(10)
    buf.write(np.arange(25, dtype=np.float32))
    assert buf.total == 25
    np.testing.assert_array_equal(buf.read(15, 10), np.arange(15, 25))


def test_steady_state_writes_reuse_the_same_storage():
    buf = RingBuffer(1000)
    storage = buf._data
    out = np.empty(300, dtype=np.float32)
    for _ in range(50):
        buf.write(np.ones(160, dtype=np.float32))
        buf.read(buf.total - 300, 300, out=out) if buf.total >= 300 else None
    assert buf._data is storage
