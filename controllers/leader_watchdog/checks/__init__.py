"""The watchdog's checks, listed once: ``--checks``, the stores watched, the metrics' label sets and the Events'
reasons follow this table. A check is a module here: its kinds of finding and a pure ``find``."""

from __future__ import annotations

from collections.abc import Mapping

from controllers.leader_watchdog.checks import (
    apiservers,
    blind_rules,
    endpoints,
    heartbeats,
    interface,
    leaders,
)
from controllers.structs import checking

TABLE = checking.CheckTable(
    (leaders.CHECK, apiservers.CHECK, endpoints.CHECK, heartbeats.CHECK, blind_rules.CHECK)
)
KINDS: Mapping[str, interface.Kind] = {kind.name: kind for check in TABLE.checks for kind in check.kinds}
