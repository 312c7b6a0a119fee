"""Kubernetes timestamps (RFC 3339 ``Time`` and ``MicroTime``) and Unix time."""

from __future__ import annotations

import datetime


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def micro_time(moment: datetime.datetime | None = None) -> str:
    """``2026-11-22T01:52:12.123456Z`` (Lease renewTime, Event eventTime)."""
    return (moment or now()).astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: object) -> float | None:
    """A Kubernetes Time or MicroTime as Unix time; None when absent or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        # In UTC, or not a time at all: 9999-12-31T23:59:59-01:00 cannot be written back as a MicroTime.
        return parsed.replace(tzinfo=parsed.tzinfo or datetime.UTC).astimezone(datetime.UTC).timestamp()
    except (ValueError, OverflowError):
        return None


def iso(moment: float | None) -> str | None:
    """Unix time as a MicroTime string (None stays None, and so does a moment outside years 1-9999)."""
    if moment is None:
        return None
    try:
        return micro_time(datetime.datetime.fromtimestamp(moment, datetime.UTC))
    except (ValueError, OverflowError, OSError):
        return None


def parse_rfc3339(text: object) -> float | None:
    """An RFC 3339 time with its time zone (``2026-12-01T00:00:00Z``) as Unix time; None for anything else (a
    date alone, a time without a zone, a moment outside years 1-9999)."""
    if not isinstance(text, str) or "T" not in text.upper():
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):
        return None


def rfc3339(moment: float | None) -> str:
    """Unix time as ``2026-12-01T00:00:00Z`` (to the second); "" for None or a moment outside years 1-9999."""
    if moment is None:
        return ""
    try:
        return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return ""
