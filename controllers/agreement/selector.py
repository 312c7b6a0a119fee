"""Label selectors, matched in memory (the same syntax kubectl's ``-l`` takes, without set-based ``in``).

A *master selector* is a list of alternatives, any of which may match: by default the control-plane role
label, or the legacy master role label that k3s still sets.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Literal

Operator = Literal["exists", "not-exists", "equals", "not-equals"]

DEFAULT_MASTER_SELECTORS: tuple[str, ...] = (
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
)

_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_REQUIREMENT = re.compile(rf"^(?P<not>!)?\s*(?P<key>{_KEY})\s*(?:(?P<op>==|!=|=)\s*(?P<value>{_VALUE}))?$")


class SelectorError(ValueError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "not-exists":
            return self.key not in labels
        if self.operator == "equals":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


@dataclasses.dataclass(frozen=True, slots=True)
class Selector:
    """All requirements must hold. ``text`` is the original string (usable as a server-side selector)."""

    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)


def parse_selector(text: str) -> Selector:
    """Parse ``a=b,!c,d!=e,f``; raises :class:`SelectorError` naming the bad part."""
    requirements = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise SelectorError(f"empty requirement in label selector {text!r}")
        match = _REQUIREMENT.match(part)
        if match is None:
            raise SelectorError(f"cannot parse {part!r} in label selector {text!r}")
        key, op, value = match["key"], match["op"], match["value"] or ""
        if match["not"]:
            if op:
                raise SelectorError(f"'!' takes a bare key, not {part!r}")
            requirements.append(Requirement(key, "not-exists"))
        elif op is None:
            requirements.append(Requirement(key, "exists"))
        elif op == "!=":
            requirements.append(Requirement(key, "not-equals", value))
        else:
            requirements.append(Requirement(key, "equals", value))
    return Selector(text=text, requirements=tuple(requirements))


def matches_any(selectors: Sequence[Selector], labels: Mapping[str, str] | None) -> bool:
    return any(selector.matches(labels) for selector in selectors)
