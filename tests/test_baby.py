"""The baby's metadata as the reason models read it (monitor/core/baby.py): the age band on the day, the one-hot
vector."""

from datetime import date

import pytest

from monitor.core.baby import METADATA_SIZE, age_band, metadata_vector


@pytest.mark.parametrize("born, on, band", [
    (date(2026, 11, 5), date(2026, 12, 2), "0-4w"),   # 27 days
    (date(2026, 11, 4), date(2026, 12, 2), "4-8w"),   # 28 days
    (date(2026, 10, 7), date(2026, 12, 2), "2-6m"),   # 56 days
    (date(2026, 5, 3), date(2026, 12, 2), "2-6m"),    # 6 months 29 days
    (date(2026, 5, 2), date(2026, 12, 2), "7m-2y"),   # 7 months
    (date(2024, 12, 3), date(2026, 12, 2), "7m-2y"),  # a day short of 2 years
    (date(2024, 12, 2), date(2026, 12, 2), "2y+"),
])
def test_age_band_from_the_birth_date_on_the_day(born, on, band):
    assert age_band(born, on) == band


def test_metadata_vector_is_one_hot_and_unknown_is_zeros():
    assert metadata_vector("m", "2y+").tolist() == [1, 0, 0, 0, 0, 0, 1]
    assert metadata_vector(None, "0-4w").tolist() == [0, 0, 1, 0, 0, 0, 0]
    assert metadata_vector(None, None).shape == (METADATA_SIZE,) and not metadata_vector(None, None).any()
    with pytest.raises(ValueError):
        age_band(date(2026, 12, 3), date(2026, 12, 2))
