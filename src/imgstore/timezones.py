"""Time zones of recordings: which zone a store's local times are shown in.

A store records ``timezone_local`` (the recording machine's zone when it was created);
Motif recorders and many labs also set a ``timezone`` user-metadata key naming the zone of
the experiment. As imgstore 0.4's viewer did, local times are shown in the ``timezone`` key
when it names a valid zone, else in the store's ``timezone_local``.
"""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .ondisk import local_timezone_name

__all__ = ["local_timezone", "local_timezone_name", "recording_timezone", "to_local_datetime"]


def local_timezone() -> ZoneInfo:
    """This machine's time zone."""
    return ZoneInfo(local_timezone_name())


def _valid_zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name.strip():
        return None
    try:
        return ZoneInfo(name.strip())
    except (ValueError, KeyError, OSError):  # unknown or malformed zone names
        return None


def recording_timezone(store: Any) -> datetime.tzinfo:
    """The zone a store's local times are shown in.

    Its ``timezone`` user metadata when that names a valid IANA zone (labs set it when the
    recording machine's clock zone is not the lab's), else the zone recorded at creation
    (``store.created[1]``), else UTC.
    """
    zone = _valid_zone((store.user_metadata or {}).get("timezone"))
    if zone is not None:
        return zone
    created_zone = store.created[1]
    return created_zone if created_zone is not None else datetime.timezone.utc


def to_local_datetime(store: Any, frame_time: float) -> datetime.datetime:
    """``frame_time`` (seconds since the epoch) as an aware datetime in :func:`recording_timezone`."""
    return datetime.datetime.fromtimestamp(float(frame_time), tz=recording_timezone(store))
