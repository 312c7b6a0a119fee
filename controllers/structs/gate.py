"""The gate's verdict as admission policies read it: a ConfigMap's string data (pure: no I/O, no clock).

upgrade-readiness publishes its verdict in ``<release>-upgrade-readiness-verdict``; the verdict relay mirrors
each workload cluster's into its Cluster's namespace, one ConfigMap per namespace whose keys carry the
cluster's name as a prefix (``<cluster>.upgradeable``). The chart's ValidatingAdmissionPolicies read these
keys as ``params.data[...]`` (CEL sees strings only, and has no clock: whoever writes the verdict turns it
when an acknowledgement expires), and the Runtime Extension answers Cluster API's hooks from them.

    format        "1"
    upgradeable   "true" | "false"
    target        "1.38": the minor it was judged against ("" when there is none)
    reasons       why not (or what to know), one line
    acknowledged  the active acknowledgements, one line
    expires       when the first active acknowledgement expires (RFC 3339; ""), so the verdict changes then
    acknowledge   the command that acknowledges a blocker for the target
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from controllers.structs import times

FORMAT = "1"
KEYS = ("format", "upgradeable", "target", "reasons", "acknowledged", "expires", "acknowledge")
# What an admission message can carry: the apiserver's Status message is not meant for pages of text.
MAX_TEXT = 1500
_TARGET = re.compile(r"(\d{1,4})\.(\d{1,4})")
# A cluster's keys in a mirror: its name (a DNS-1123 subdomain, as Cluster API's names are) and a dot.
_CLUSTER = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


@dataclasses.dataclass(frozen=True, slots=True)
class GateVerdict:
    upgradeable: bool
    target: str  # "1.38"; "" when there is no target
    reasons: str = ""
    acknowledged: str = ""
    expires: float | None = None  # Unix time
    acknowledge: str = ""

    def data(self, *, prefix: str = "") -> dict[str, str]:
        """Its keys (each with ``prefix``, a mirror's ``<cluster>.``)."""
        values = {
            "format": FORMAT,
            "upgradeable": "true" if self.upgradeable else "false",
            "target": self.target,
            "reasons": bounded(self.reasons),
            "acknowledged": bounded(self.acknowledged),
            "expires": times.rfc3339(self.expires),
            "acknowledge": bounded(self.acknowledge),
        }
        return {prefix + key: value for key, value in values.items()}

    @property
    def summary(self) -> str:
        """One line: ``upgradeable to 1.38``, ``not upgradeable to 1.38: <reasons>``."""
        verdict = "upgradeable" if self.upgradeable else "not upgradeable"
        where = f" to {self.target}" if self.target else " (no target)"
        return f"{verdict}{where}" + (f": {self.reasons}" if self.reasons and not self.upgradeable else "")


def bounded(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_TEXT else line[: MAX_TEXT - 1] + "…"


def read(data: Mapping[str, object], *, prefix: str = "") -> GateVerdict | str:
    """The verdict under ``prefix`` in a ConfigMap's data (another cluster's, so untrusted), or what is
    wrong with it. Text is kept bounded; an unknown format, a missing or odd ``upgradeable``, a target that
    is no minor, an unreadable ``expires`` are refused, never guessed."""
    values: dict[str, str] = {}
    for key in KEYS:
        raw = data.get(prefix + key, "")
        if not isinstance(raw, str):
            return f"{prefix}{key} is not a string"
        values[key] = raw
    if values["format"] != FORMAT:
        return f"{prefix}format is {values['format'][:16]!r}, not {FORMAT!r}: written by another release"
    if values["upgradeable"] not in ("true", "false"):
        return f"{prefix}upgradeable is {values['upgradeable'][:16]!r}, not 'true' or 'false'"
    if values["target"] and not _TARGET.fullmatch(values["target"]):
        return f"{prefix}target {values['target'][:16]!r} is not a minor such as 1.38"
    if values["upgradeable"] == "true" and not values["target"]:
        return f"{prefix}upgradeable without a target"
    expires = times.parse_rfc3339(values["expires"]) if values["expires"] else None
    if values["expires"] and expires is None:
        return f"{prefix}expires {values['expires'][:40]!r} is not an RFC 3339 time"
    return GateVerdict(
        upgradeable=values["upgradeable"] == "true",
        target=values["target"],
        reasons=bounded(values["reasons"]),
        acknowledged=bounded(values["acknowledged"]),
        expires=expires,
        acknowledge=bounded(values["acknowledge"]),
    )


def at(verdict: GateVerdict, *, now: float) -> GateVerdict:
    """The verdict as it stands at ``now`` when nobody has judged again since it was written: once its
    acknowledgement expired, not upgradeable (who copies a verdict cannot tell what else changed)."""
    if verdict.expires is None or now < verdict.expires or not verdict.upgradeable:
        return verdict
    return dataclasses.replace(
        verdict,
        upgradeable=False,
        reasons=f"its acknowledgement expired at {times.rfc3339(verdict.expires)} and the cluster has not "
        f"been judged since; {verdict.reasons}".rstrip("; "),
        acknowledged="",
        expires=None,
    )


def cluster_prefix(cluster: str) -> str | None:
    """``<cluster>.``: a mirror's key prefix for a Cluster (None for a name that cannot be one)."""
    return f"{cluster}." if _CLUSTER.fullmatch(cluster) else None


_MINOR = re.compile(r"v?(\d{1,4})\.(\d{1,4})(?:[.+-]|$)")


def minor_of(text: str) -> tuple[int, int] | None:
    """(major, minor) of a version as upgrade drivers write it (``v1.38.0``, ``1.38.2+k3s1``); None otherwise."""
    found = _MINOR.match(text)
    return (int(found[1]), int(found[2])) if found else None


def admits(verdict: GateVerdict | None, *, old: str, new: str) -> str:
    """Why the gate refuses a change of a version field from ``old`` to ``new`` ("" when it admits it). The
    rule of the chart's ValidatingAdmissionPolicies (templates/_gate.tpl says it in CEL), and of the Runtime
    Extension's hooks: no minor upgrade (a patch, a downgrade) passes; an upgrade passes to a minor below the
    verdict's target, or to the target while the verdict is upgradeable; anything else is refused — the
    target while not upgradeable, a minor beyond it (judged one minor at a time), any upgrade without a
    verdict or a target."""
    wanted, current = minor_of(new), minor_of(old)
    if not new:
        return ""
    if wanted is None:
        return f"{new} is not a Kubernetes version the upgrade gate can judge (v1.38.0)"
    if current is not None and wanted <= current:
        return ""
    if verdict is None or minor_of(verdict.target) is None:
        reasons = f": {verdict.reasons}" if verdict is not None and verdict.reasons else ""
        return f"{new}: no verdict of the upgrade gate{reasons}"
    target = minor_of(verdict.target)
    assert target is not None
    if wanted < target or (wanted == target and verdict.upgradeable):
        return ""
    if wanted > target:
        return f"{new}: the gate judged the next minor {verdict.target} only: upgrade one minor at a time"
    acknowledge = (
        f". To acknowledge a blocker for {verdict.target}: {verdict.acknowledge}"
        if verdict.acknowledge
        else ""
    )
    return f"{new}: not upgradeable to {verdict.target}: {verdict.reasons}{acknowledge}"
