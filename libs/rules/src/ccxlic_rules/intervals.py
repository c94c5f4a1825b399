"""Reporting intervals: fixed-length windows aligned to 00:00 UTC (8 h by default, as the licensing authority uses)."""

from __future__ import annotations

from datetime import datetime, timedelta


def interval_start(t: datetime, interval: timedelta) -> datetime:
    """The start of the reporting interval holding t; `interval` must divide a day."""
    midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + ((t - midnight) // interval) * interval
