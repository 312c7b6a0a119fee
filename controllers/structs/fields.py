"""Fields of raw API objects, read defensively: a field that is missing or of the wrong type reads as absent.

Objects come from the API, the state ConfigMaps and bundles, each of which may hold what a buggy client or a
hand edit left there; the decision code reads them through these helpers and never raises on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_EMPTY: Mapping[str, Any] = {}


def mapping(value: object) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else _EMPTY


def mappings(value: object) -> list[Mapping[str, Any]]:
    """The mapping entries of a list (conditions, taints, addresses…); [] when ``value`` is no list."""
    return [entry for entry in value if isinstance(entry, Mapping)] if isinstance(value, list) else []


def strings(value: object) -> list[str]:
    """The non-empty string entries of a list (verbs, addresses, versions…); [] when ``value`` is no list."""
    return [entry for entry in value if isinstance(entry, str) and entry] if isinstance(value, list) else []


def dig(obj: object, *path: str) -> object:
    """``obj[path[0]][path[1]]…``, or None when a step is missing or not a mapping."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def integer(value: object) -> int | None:
    """An integer field (``generation``, ``replicas``…): an int, not a bool, a float or a string; else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
