"""The checks that compare the live cluster with the release delta of the target minor (pure).

Each takes the target's :class:`model.Delta` and what the cluster shows (read by :mod:`.component_settings`
and :mod:`.promql`) and returns a :class:`ReleaseVerdict`: findings, each with a severity (not every one
blocks, unlike :class:`interface.Blocker`), and what could not be evaluated. They are not in the check
table yet: each becomes a ``checks/<name>.py`` with its ``judge`` once its stores (mirror pods, the
kubeadm-config, kubelet-config and kube-proxy ConfigMaps, PrometheusRules) and their RBAC are wired.

- ``feature-gates``: a gate set on a component that the target removes (the component refuses to start
  on a gate it does not know), or set to the non-default value of a gate the target locks: blocker.
- ``component-flags``: a flag set that the target removes: blocker; one it deprecates: warning.
- ``kubeadm-config``: the stored ClusterConfiguration's apiVersion the target's kubeadm does not read: blocker.
- ``alert-metrics``: alerting and recording rules that select metrics the target no longer exports:
  warning (blocker when ``strict``).
- ``component-versions``: the etcd / CoreDNS / pause versions kubeadm of the target installs: information.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Literal, get_args

from controllers.release_delta import model
from controllers.upgrade_readiness.checks import component_settings, promql

ReleaseCheck = Literal[
    "feature-gates", "component-flags", "kubeadm-config", "alert-metrics", "component-versions"
]
RELEASE_CHECKS: tuple[ReleaseCheck, ...] = get_args(ReleaseCheck)
Severity = Literal["blocker", "warning", "info"]


@dataclasses.dataclass(frozen=True, slots=True)
class ReleaseFinding:
    check: ReleaseCheck
    severity: Severity
    subject: str  # where: "kube-apiserver on cp1 (static pod kube-system/kube-apiserver-cp1)"
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class ReleaseVerdict:
    check: ReleaseCheck
    findings: tuple[ReleaseFinding, ...] = ()
    unknown: str = ""  # what could not be evaluated

    @property
    def blocking(self) -> bool:
        return any(f.severity == "blocker" for f in self.findings)


def _target(delta: model.Delta) -> str:
    return (
        f"{delta.target.minor} ({delta.target.version}, a prerelease)"
        if delta.prerelease
        else delta.target.minor
    )


def _unknown(settings: Iterable[component_settings.Settings]) -> str:
    return "; ".join(f"{s.where}: {s.problem}" for s in settings if s.problem)


def feature_gates(settings: Iterable[component_settings.Settings], *, delta: model.Delta) -> ReleaseVerdict:
    """Gates the cluster sets that the target removes, or locks to the other value."""
    settings = tuple(settings)
    findings = []
    for where in settings:
        for gate, enabled in where.gates:
            message = _gate_problem(where.component, gate, enabled, delta=delta)
            if message:
                findings.append(ReleaseFinding("feature-gates", "blocker", f"{where.where}: {gate}", message))
    return ReleaseVerdict("feature-gates", tuple(findings), _unknown(settings))


def _gate_problem(
    component: component_settings.Configured, gate: str, enabled: bool, *, delta: model.Delta
) -> str:
    target = _target(delta)
    if component == "kubeadm":
        if gate in delta.kubeadm_gates_removed:
            return (
                f"kubeadm {target} no longer knows this feature gate and refuses the configuration: remove it"
            )
        locked = next((g for g in delta.kubeadm_gates_locked if g.name == gate), None)
        if locked is not None and locked.default != enabled:
            return f"kubeadm {target} locks it to {str(locked.default).lower()}: remove it"
        return ""
    removed = delta.removed_gate(gate)
    if removed is not None and component in removed.components:
        return (
            f"{target} removes this feature gate ({gate}={str(enabled).lower()} is set): {component} would refuse "
            "to start on an unknown gate; remove it before the upgrade"
        )
    locked_gate = delta.locked_gate(gate)
    if locked_gate is not None and component in locked_gate.components and locked_gate.default != enabled:
        return (
            f"{target} locks this feature gate to {str(locked_gate.default).lower()}: {component} would refuse "
            f"to start with {gate}={str(enabled).lower()}; remove it before the upgrade"
        )
    return ""


def component_flags(settings: Iterable[component_settings.Settings], *, delta: model.Delta) -> ReleaseVerdict:
    """Flags the cluster sets that the target removes (blocker) or deprecates (warning)."""
    settings = tuple(settings)
    findings = []
    target = _target(delta)
    for where in settings:
        if where.component == "kubeadm":
            continue
        for flag in dict.fromkeys(where.flags):
            if delta.removed_flag(where.component, flag) is not None:
                message = (
                    f"{target} removes --{flag}: {where.component} would refuse to start; remove it first"
                )
                findings.append(
                    ReleaseFinding("component-flags", "blocker", f"{where.where}: --{flag}", message)
                )
                continue
            deprecated = next(
                (f for f in delta.flags_deprecated if f.component == where.component and f.matches(flag)),
                None,
            )
            if deprecated is not None:
                note = f": {deprecated.message}" if deprecated.message else ""
                message = f"{target} deprecates --{flag}{note}"
                findings.append(
                    ReleaseFinding("component-flags", "warning", f"{where.where}: --{flag}", message)
                )
    return ReleaseVerdict("component-flags", tuple(findings), _unknown(settings))


def kubeadm_config(
    config: component_settings.ClusterConfiguration | None, *, delta: model.Delta
) -> ReleaseVerdict:
    """The stored ClusterConfiguration's apiVersion against what the target's kubeadm reads (None: the
    cluster has no kubeadm-config, it is not a kubeadm cluster: nothing to check)."""
    if config is None:
        return ReleaseVerdict("kubeadm-config")
    if not config.api_version:
        return ReleaseVerdict(
            "kubeadm-config", unknown=f"{component_settings.KUBEADM_CONFIG}: {config.problem}"
        )
    subject = f"{component_settings.KUBEADM_CONFIG} ClusterConfiguration {config.api_version}"
    served = delta.served_kubeadm_api(config.api_version)
    target = _target(delta)
    readable = ", ".join(f"{a.version} ({a.status})" for a in delta.kubeadm_apis)
    if served is None or served.status == "experimental":
        why = "no longer reads" if config.api_version in delta.kubeadm_apis_removed else "does not read"
        message = (
            f"kubeadm {target} {why} {config.api_version} (it reads {readable}): "
            "`kubeadm config migrate` the stored configuration first"
        )
        return ReleaseVerdict(
            "kubeadm-config", (ReleaseFinding("kubeadm-config", "blocker", subject, message),)
        )
    if served.status == "deprecated":
        message = (
            f"kubeadm {target} reads {config.api_version} with a deprecation warning (it reads {readable})"
        )
        return ReleaseVerdict(
            "kubeadm-config", (ReleaseFinding("kubeadm-config", "warning", subject, message),)
        )
    return ReleaseVerdict("kubeadm-config")


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a PrometheusRule: where it is and its expression (untrusted)."""

    namespace: str
    name: str  # the PrometheusRule
    group: str
    rule: str  # the alert's or the recording rule's name
    expr: object


def prometheus_rules(obj: Mapping[str, object]) -> tuple[Rule, ...]:
    """The rules of a PrometheusRule object (spec.groups[].rules[]), whatever their shape (untrusted)."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    spec = obj.get("spec")
    groups = spec.get("groups") if isinstance(spec, Mapping) else None
    rules = []
    for group in groups if isinstance(groups, list) else []:
        if not isinstance(group, Mapping):
            continue
        items = group.get("rules")
        for rule in items if isinstance(items, list) else []:
            if isinstance(rule, Mapping):
                name = str(rule.get("alert") or rule.get("record") or "")
                namespace, prometheus_rule = str(meta.get("namespace", "")), str(meta.get("name", ""))
                rules.append(
                    Rule(namespace, prometheus_rule, str(group.get("name", "")), name, rule.get("expr"))
                )
    return tuple(rules)


def alert_metrics(rules: Iterable[Rule], *, delta: model.Delta, strict: bool = False) -> ReleaseVerdict:
    """Rules whose expressions select metrics the target no longer exports: they would go blind."""
    gone = {series: metric for metric in delta.metrics_removed for series in metric.series()}
    severity: Severity = "blocker" if strict else "warning"
    target = _target(delta)
    findings, unread = [], []
    for rule in rules:
        subject = f"PrometheusRule {rule.namespace}/{rule.name} group {rule.group!r} rule {rule.rule!r}"
        selection = promql.metric_names(rule.expr)
        if selection.problem:
            unread.append(f"{subject}: {selection.problem}")
        for series in sorted(selection.names & gone.keys()):
            metric = gone[series]
            how = "hides it (deprecated)" if metric.change == "hidden" else "removes it"
            instead = f"; use {metric.replacement}" if metric.replacement else ""
            message = (
                f"selects {series}: {target} {how} from {', '.join(metric.components) or 'its components'}"
                f"{instead}; the rule would see no series"
            )
            findings.append(ReleaseFinding("alert-metrics", severity, subject, message))
    return ReleaseVerdict("alert-metrics", tuple(findings), "; ".join(unread))


def component_versions(
    delta: model.Delta, *, running: Mapping[model.Installed, str] | None = None
) -> ReleaseVerdict:
    """What kubeadm of the target installs by default where it changes (with what runs now, when known)."""
    running = running or {}
    findings = []
    for change in delta.versions:
        now = f" (the cluster runs {running[change.name]})" if running.get(change.name) else ""
        message = f"kubeadm {_target(delta)} installs {change.name} {change.after}, {delta.source.minor} installed {change.before}{now}"
        findings.append(ReleaseFinding("component-versions", "info", change.name, message))
    return ReleaseVerdict("component-versions", tuple(findings))
