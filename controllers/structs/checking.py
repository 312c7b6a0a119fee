"""Checks as plug-ins (after kured's reboot blockers): one small object per check, one table per controller.

A :class:`Check` has a name (what users write in ``--checks``), the inputs it needs (the stores to watch, the
reads to make: only those of enabled checks are made) and a pure verdict over what those inputs show now. A
controller's :class:`CheckTable` lists its checks once; the ``--checks`` option, its validation, which stores are
watched and what is reported per check all follow from it. Adding a check is its module and a line in the
table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")
C = TypeVar("C", bound="Check[Any, Any]")


@dataclasses.dataclass(frozen=True)
class Check(Generic[In, Out]):
    """``judge`` must be pure: what it returns depends only on what it is given."""

    name: str
    needs: frozenset[str]
    judge: Callable[[In], Out]


@dataclasses.dataclass(frozen=True)
class CheckTable(Generic[C]):
    checks: tuple[C, ...]

    def __post_init__(self) -> None:
        assert len(set(self.names)) == len(self.names), f"a check is listed twice: {self.names}"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(check.name for check in self.checks)

    def problem(self, chosen: Iterable[str]) -> str | None:
        """What is wrong with a ``--checks`` value (None: nothing)."""
        unknown = [name for name in chosen if name not in self.names]
        return f"unknown check(s) {', '.join(unknown)} (known: {', '.join(self.names)})" if unknown else None

    def enabled(self, chosen: Iterable[str]) -> tuple[C, ...]:
        """The chosen checks, in the table's order."""
        wanted = set(chosen)
        return tuple(check for check in self.checks if check.name in wanted)

    def needs(self, chosen: Iterable[str]) -> frozenset[str]:
        """Every input the chosen checks need."""
        return frozenset().union(*(check.needs for check in self.enabled(chosen)))
