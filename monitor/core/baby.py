"""What the parents tell us about their baby, as the reason models read it: sex and age band.

The age band is derived from the birth date on the day a cry is classified (a baby set up at 3 weeks is in
"4-8w" a month later without anyone editing the config). Bands and tags are Donate-a-cry's, the only data the
models learned from. Unknown sex or age (``None``) encodes as zeros: the metadata models were trained with
fields dropped at random, so "not told" is an input they know, not an error.

Example:
    >>> from datetime import date
    >>> age_band(date(2026, 10, 1), date(2026, 12, 2))
    '2-6m'
    >>> metadata_vector("f", "4-8w").tolist()
    [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    >>> metadata_vector(None, None).sum()
    np.float32(0.0)
"""

from __future__ import annotations

from datetime import date

import numpy as np

SEXES = ("m", "f")
AGE_BANDS = ("0-4w", "4-8w", "2-6m", "7m-2y", "2y+")
METADATA_SIZE = len(SEXES) + len(AGE_BANDS)


def age_band(birth_date: date, on: date) -> str:
    """The Donate-a-cry age band of a baby born on ``birth_date``, on the day ``on``."""
    days = (on - birth_date).days
    if days < 0:
        raise ValueError(f"birth date {birth_date} is after {on}")
    months = (on.year - birth_date.year) * 12 + on.month - birth_date.month - (on.day < birth_date.day)
    if days < 28:
        return "0-4w"
    if days < 56:
        return "4-8w"
    if months < 7:
        return "2-6m"
    return "7m-2y" if months < 24 else "2y+"


def metadata_vector(sex: str | None, band: str | None) -> np.ndarray:
    """One-hot sex (m, f) then one-hot age band; an unknown field is all zeros."""
    vector = np.zeros(METADATA_SIZE, dtype=np.float32)
    if sex:
        vector[SEXES.index(sex)] = 1.0
    if band:
        vector[len(SEXES) + AGE_BANDS.index(band)] = 1.0
    return vector
