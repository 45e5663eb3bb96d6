"""Whole UTC hours: the time step every flood module works in (one place for the checks).

>>> from datetime import datetime, timezone, timedelta
>>> hour_floor(datetime(2014, 10, 12, 3, 40, tzinfo=timezone(timedelta(hours=2))))
datetime.datetime(2014, 10, 12, 1, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

__all__ = ["HOUR", "FloatArray", "hour_floor", "require_utc_hour"]

FloatArray = NDArray[np.float64]
HOUR = timedelta(hours=1)


def _aware_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"datetime must be timezone-aware (UTC), got naive {when}")
    return when.astimezone(UTC)


def require_utc_hour(when: datetime) -> datetime:
    """``when`` in UTC; ValueError if it is naive or not a whole hour."""
    when = _aware_utc(when)
    if (when.minute, when.second, when.microsecond) != (0, 0, 0):
        raise ValueError(f"expected a whole hour, got {when.isoformat()}")
    return when


def hour_floor(when: datetime) -> datetime:
    """The whole UTC hour at or before ``when`` (which must be timezone-aware)."""
    return _aware_utc(when).replace(minute=0, second=0, microsecond=0)

