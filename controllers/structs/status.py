"""One status shape for every controller (after system-upgrade-controller's typed conditions): what it is doing,
for which version, why, its last error and progress, and a condition per item it judges.

A controller fills a :class:`Status` and hands it to the skeleton (``Reconciler.publish``); the skeleton renders
it the same way everywhere — ``/status`` and ``--once`` (:meth:`Status.to_json`), the state ConfigMap
(:meth:`Status.state_data`, read by ``kube-upgrade-controllers status``) — writes it only when it changed, and
records an Event only when a condition changed (:func:`transitions`): one place decides what is news.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from controllers.structs import refs


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """One judgement about one item: ``type`` (what is judged: "kubelet-skew", "stale-leader") of ``subject``
    (the item: "Lease kube-system/kube-scheduler"; "" for the controller as a whole), its ``status`` now
    ("True", "blocked"), and ``reason`` (CamelCase: the Event reason of a change into this status).

    An Event goes on ``ref`` (None: the controller's state ConfigMap), a Warning when ``warning``. ``quiet``: its
    appearing and clearing are no news, only a change of its status (a check that passes when the controller
    starts, the first holder seen of a leader Lease)."""

    type: str
    status: str
    reason: str
    message: str = ""
    subject: str = ""
    ref: refs.ObjectRef | None = None
    warning: bool = False
    quiet: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.type, self.subject)

    def to_json(self) -> dict[str, str]:
        found = {"type": self.type, "status": self.status, "reason": self.reason, "message": self.message}
        return {**found, "subject": self.subject} if self.subject else found


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    """A controller's status. ``phase`` empty: nothing to record yet (the state ConfigMap is left alone).
    ``data``: the controller's own keys in its state ConfigMap; ``detail``: its own keys in ``/status``."""

    phase: str = ""
    version: str = ""  # the version it acts on or judges against
    reason: str = ""  # why it is in this phase (why it cannot act)
    last_error: str = ""
    progress: str = ""
    conditions: tuple[Condition, ...] = ()
    data: Mapping[str, str] = dataclasses.field(default_factory=dict)
    detail: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``/status`` and ``--once``: the common keys, the conditions, then the controller's own."""
        common = {
            "phase": self.phase,
            "version": self.version,
            "reason": self.reason,
            "lastError": self.last_error,
            "progress": self.progress,
            "conditions": [condition.to_json() for condition in self.conditions],
        }
        clash = sorted(set(common) & set(self.detail))
        assert not clash, f"a controller's own /status keys hide common ones: {clash}"
        return {**common, **self.detail}

    def state_data(self) -> dict[str, str]:
        """The state ConfigMap's data: the common keys (the conditions as JSON when there are any), then the
        controller's own."""
        common = {
            "version": self.version,
            "phase": self.phase,
            "progress": self.progress,
            "lastError": self.last_error,
            "reason": self.reason,
        }
        if self.conditions:
            common["conditions"] = json.dumps([c.to_json() for c in self.conditions], sort_keys=True)
        clash = sorted(set(common) & set(self.data))
        assert not clash, f"a controller's own state keys hide common ones: {clash}"
        return {**common, **self.data}


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """An Event to record: a condition appeared, changed status, or cleared."""

    ref: refs.ObjectRef | None
    reason: str
    note: str
    warning: bool


def transitions(before: Sequence[Condition], now: Sequence[Condition]) -> list[Transition]:
    """The Events that ``now`` makes news after ``before``: one per condition that appeared (unless quiet), in
    ``now``'s order; one per condition that cleared (unless quiet: ``<reason>Cleared``, Normal); then one per
    condition that changed status."""
    known = {c.key: c for c in before}
    current = {c.key for c in now}
    appeared = [c for c in now if c.key not in known and not c.quiet]
    cleared = [c for c in before if c.key not in current and not c.quiet]
    changed = [c for c in now if c.key in known and known[c.key].status != c.status]
    return [
        *(Transition(c.ref, c.reason, c.message, c.warning) for c in appeared),
        *(Transition(c.ref, f"{c.reason}Cleared", f"{c.subject or c.type}: cleared", False) for c in cleared),
        *(Transition(c.ref, c.reason, c.message, c.warning) for c in changed),
    ]
