"""From two releases' facts (what ``scan`` read from their source) to the delta between them. Pure.

The rules, each as the release's own code applies it:

- A component refuses a feature gate it does not know, and one locked to its default set to the other
  value (component-base/featuregate). A gate's spec at a release is the last versioned spec at or below
  its minor.
- A deprecated metric is hidden (not exported unless --show-hidden-metrics-for-version) once its minor
  plus the stability's deprecation period (STABLE 3, BETA 1, otherwise 0) is reached
  (component-base/metrics, shouldHide).
- An API kind is served until the minor its APILifecycleRemoved names.
- kubeadm reads the config API versions its scheme registers, less those validateSupportedVersion refuses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NotRequired, TypedDict

from controllers.release_delta import model


class SpecFacts(TypedDict):
    version: str  # "1.33"; "" for an unversioned FeatureSpec
    default: bool
    preRelease: str
    lockToDefault: bool


class GateFacts(TypedDict):
    name: str
    package: str
    specs: list[SpecFacts]


class FlagFacts(TypedDict):
    name: str
    deprecated: bool
    deprecationMessage: NotRequired[str]


class ComponentFacts(TypedDict):
    packages: int
    declarations: int
    flags: list[FlagFacts]
    unresolvedFlags: int
    gates: list[str]
    metrics: list[str]


class MetricFacts(TypedDict):
    name: str
    type: str
    stability: str
    deprecatedVersion: NotRequired[str]
    help: NotRequired[str]


class ApiFacts(TypedDict):
    group: str
    version: str
    kind: str
    introduced: NotRequired[str]
    deprecated: NotRequired[str]
    removed: NotRequired[str]
    replacement: NotRequired[str]


class KubeadmApiFacts(TypedDict):
    version: str
    status: str


class KubeadmGateFacts(TypedDict):
    name: str
    spec: SpecFacts
    deprecated: bool


class KubeadmFacts(TypedDict):
    apiVersions: list[KubeadmApiFacts]
    gates: list[KubeadmGateFacts]
    defaults: dict[str, str]


class Facts(TypedDict):
    version: str
    components: dict[str, ComponentFacts]
    gates: list[GateFacts]
    metrics: list[MetricFacts]
    apis: list[ApiFacts]
    kubeadm: KubeadmFacts


_NUMBERS = re.compile(r"^v?(\d+)\.(\d+)")
# "[DEPRECATED, consider using apiserver_resource_objects instead]", "Use foo_total instead."
_INSTEAD = re.compile(r"\b(?:use|using)\s+`?([a-zA-Z_:][a-zA-Z0-9_:]*)`?\s+instead", re.IGNORECASE)
DEPRECATION_PERIOD = {"STABLE": 3, "BETA": 1}  # minors a deprecated metric stays shown; others: 0


def minor_of(version: str) -> tuple[int, int]:
    """``v1.37.2`` / ``1.37`` → (1, 37); "" (an unversioned spec) → (0, 0)."""
    match = _NUMBERS.match(version)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def spec_at(specs: Iterable[SpecFacts], minor: tuple[int, int]) -> SpecFacts | None:
    """The spec in effect at a minor: the last one whose version is at or below it."""
    effective = None
    for spec in sorted(specs, key=lambda s: minor_of(s["version"])):
        if minor_of(spec["version"]) <= minor:
            effective = spec
    return effective


def hidden(metric: MetricFacts, *, release: str) -> bool:
    """Whether the release hides a deprecated metric by default (component-base/metrics shouldHide)."""
    deprecated = metric.get("deprecatedVersion", "")
    if not _NUMBERS.match(deprecated):
        return False
    major, minor = minor_of(deprecated)
    current = minor_of(release)
    if major != current[0]:
        return major < current[0]
    shown_until = minor + DEPRECATION_PERIOD.get(metric["stability"], 0)
    if shown_until != current[1]:
        return shown_until < current[1]
    return "alpha.0" not in release  # hidden from the minor's first prerelease after alpha.0


def _components(names: Iterable[str]) -> tuple[model.Component, ...]:
    present = set(names)
    return tuple(c for c in model.COMPONENTS if c in present)


def derive(old: Facts, new: Facts) -> model.Delta:
    """What upgrading from ``old``'s release to ``new``'s brings."""
    old_minor, new_minor = minor_of(old["version"]), minor_of(new["version"])
    return model.Delta(
        source=model.Release(old["version"]),
        target=model.Release(new["version"]),
        gates_removed=_gates_removed(old, new, minor=old_minor),
        gates_locked=_gates_locked(old, new, old_minor=old_minor, new_minor=new_minor),
        flags_removed=_flags(old, new, deprecated=False),
        flags_deprecated=_flags(old, new, deprecated=True),
        apis_removed=_apis_removed(old, new, old_minor=old_minor, new_minor=new_minor),
        metrics_removed=_metrics_removed(old, new),
        kubeadm_apis=tuple(
            model.KubeadmApi(a["version"], model.choice(a["status"], model.KUBEADM_API_STATUSES))
            for a in sorted(new["kubeadm"]["apiVersions"], key=lambda a: a["version"])
        ),
        kubeadm_apis_removed=tuple(
            sorted(
                {a["version"] for a in old["kubeadm"]["apiVersions"]}
                - {a["version"] for a in new["kubeadm"]["apiVersions"]}
            )
        ),
        kubeadm_gates_removed=tuple(
            sorted(
                {g["name"] for g in old["kubeadm"]["gates"]} - {g["name"] for g in new["kubeadm"]["gates"]}
            )
        ),
        kubeadm_gates_locked=tuple(
            model.LockedGate(g["name"], (), g["spec"]["default"])
            for g in sorted(new["kubeadm"]["gates"], key=lambda g: g["name"])
            if g["spec"]["lockToDefault"]
            and not any(
                o["name"] == g["name"] and o["spec"]["lockToDefault"] for o in old["kubeadm"]["gates"]
            )
        ),
        versions=tuple(
            model.VersionChange(name, old["kubeadm"]["defaults"][name], new["kubeadm"]["defaults"][name])
            for name in model.INSTALLED
            if old["kubeadm"]["defaults"][name] != new["kubeadm"]["defaults"][name]
        ),
    )


def _knowing(facts: Facts) -> dict[str, list[str]]:
    """Gate name → the components that know it."""
    knowing: dict[str, list[str]] = {}
    for component, seen in facts["components"].items():
        for gate in seen["gates"]:
            knowing.setdefault(gate, []).append(component)
    return knowing


def _gates_removed(old: Facts, new: Facts, *, minor: tuple[int, int]) -> tuple[model.RemovedGate, ...]:
    specs = {g["name"]: g["specs"] for g in old["gates"]}
    before, after = _knowing(old), _knowing(new)
    removed = []
    for name in sorted(before):
        lost = [c for c in before[name] if c not in after.get(name, [])]
        if not lost:
            continue
        spec = spec_at(specs.get(name, []), minor)
        removed.append(
            model.RemovedGate(
                name=name,
                components=_components(lost),
                default=bool(spec and spec["default"]),
                locked=bool(spec and spec["lockToDefault"]),
            )
        )
    return tuple(removed)


def _gates_locked(
    old: Facts, new: Facts, *, old_minor: tuple[int, int], new_minor: tuple[int, int]
) -> tuple[model.LockedGate, ...]:
    old_specs = {g["name"]: g["specs"] for g in old["gates"]}
    knowing = _knowing(new)
    locked = []
    for gate in sorted(new["gates"], key=lambda g: g["name"]):
        spec = spec_at(gate["specs"], new_minor)
        if spec is None or not spec["lockToDefault"] or gate["name"] not in knowing:
            continue
        before = spec_at(old_specs.get(gate["name"], []), old_minor)
        if before is not None and before["lockToDefault"]:
            continue
        locked.append(model.LockedGate(gate["name"], _components(knowing[gate["name"]]), spec["default"]))
    return tuple(locked)


def _flags(old: Facts, new: Facts, *, deprecated: bool) -> tuple[model.Flag, ...]:
    """Flags the new release removes (or, ``deprecated``, newly deprecates), per component."""
    out = []
    for component in model.COMPONENTS:
        before = {f["name"]: f for f in old["components"][component]["flags"]}
        after = {f["name"]: f for f in new["components"][component]["flags"]}
        for name in sorted(before):
            if not deprecated and name not in after:
                out.append(model.Flag(component, name))
            elif (
                deprecated and name in after and after[name]["deprecated"] and not before[name]["deprecated"]
            ):
                out.append(model.Flag(component, name, after[name].get("deprecationMessage", "")))
    return tuple(out)


ApiKey = tuple[str, str, str]


def _served(facts: Facts, minor: tuple[int, int]) -> dict[ApiKey, ApiFacts]:
    served = {}
    for api in facts["apis"]:
        removed = api.get("removed", "")
        if not removed or minor_of(removed) > minor:
            served[(api["group"], api["version"], api["kind"])] = api
    return served


def _apis_removed(
    old: Facts, new: Facts, *, old_minor: tuple[int, int], new_minor: tuple[int, int]
) -> tuple[model.RemovedApi, ...]:
    before, after = _served(old, old_minor), _served(new, new_minor)
    listed = {(a["group"], a["version"], a["kind"]): a for a in new["apis"]}
    removed = []
    for key in sorted(set(before) - set(after)):
        # Still in the source: its lifecycle says when it goes; gone from the source: with this release.
        api = listed.get(key)
        removed.append(
            model.RemovedApi(
                group=key[0],
                version=key[1],
                kind=key[2],
                removed=api.get("removed", "") if api else model.minor_text(new_minor),
                replacement=(api or before[key]).get("replacement", ""),
            )
        )
    return tuple(removed)


def _exported(facts: Facts) -> dict[str, list[str]]:
    """Metric name → the components whose code defines it, for those the release exports by default."""
    defined = {m["name"]: m for m in facts["metrics"]}
    exported: dict[str, list[str]] = {}
    for component, seen in facts["components"].items():
        for name in seen["metrics"]:
            if name in defined and not hidden(defined[name], release=facts["version"]):
                exported.setdefault(name, []).append(component)
    return exported


def _metrics_removed(old: Facts, new: Facts) -> tuple[model.RemovedMetric, ...]:
    before, after = _exported(old), _exported(new)
    old_defs = {m["name"]: m for m in old["metrics"]}
    new_defs = {m["name"]: m for m in new["metrics"]}
    defined_after = {name for seen in new["components"].values() for name in seen["metrics"]}
    arrived = [new_defs[name] for name in sorted(set(after) - set(before)) if name in new_defs]
    removed = []
    for name in sorted(set(before) - set(after)):
        metric = new_defs.get(name, old_defs[name]) if name in defined_after else old_defs[name]
        removed.append(
            model.RemovedMetric(
                name=name,
                type=model.choice(metric["type"], model.METRIC_TYPES),
                stability=metric["stability"],
                change="hidden" if name in defined_after else "removed",
                components=_components(before[name]),
                replacement=_replacement(metric, exported=after, arrived=arrived),
            )
        )
    return tuple(removed)


def _replacement(
    metric: MetricFacts, *, exported: Mapping[str, object], arrived: Iterable[MetricFacts]
) -> str:
    """The metric that replaces one the new release no longer exports: the one its help text says to use
    instead, else the only metric new in this release with the same type and help text (a rename)."""
    for candidate in _INSTEAD.findall(metric.get("help", "")):
        if candidate in exported and candidate != metric["name"]:
            return str(candidate)
    help_text = metric.get("help", "")
    same = [
        m["name"] for m in arrived if help_text and m.get("help") == help_text and m["type"] == metric["type"]
    ]
    return same[0] if len(same) == 1 else ""


_SEMVER = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.]+))?$")


def newest_per_minor(versions: Iterable[str], *, first: tuple[int, int]) -> list[str]:
    """Each minor's newest release from ``first`` on (its newest prerelease while it has no release), in
    order. ``versions`` as ``go list -m -versions`` prints them."""
    best: dict[tuple[int, int], tuple[tuple[int, int, tuple[tuple[int, int | str], ...]], str]] = {}
    for version in versions:
        match = _SEMVER.match(version)
        if match is None:
            continue
        minor = (int(match[1]), int(match[2]))
        if minor < first:
            continue
        pre = match[4]
        # A release sorts after every prerelease of its patch; prerelease fields compare as semver's do.
        fields = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if pre else ()
        key = (1 if pre is None else 0, int(match[3]), fields)
        if minor not in best or key > best[minor][0]:
            best[minor] = (key, version)
    return [best[minor][1] for minor in sorted(best)]
