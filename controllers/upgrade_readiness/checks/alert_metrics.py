"""alert-metrics: alerting and recording rules (PrometheusRules, where the CRD is served) whose expressions
select metrics the target no longer exports: after the upgrade they would see no series and never fire.
Warning (a blocker with --strict)."""

from __future__ import annotations

from collections.abc import Iterable

from controllers.release_delta import model
from controllers.structs import checking, promql
from controllers.upgrade_readiness.checks import interface, next_release

NAME = "alert-metrics"


def alert_metrics(rules: Iterable[interface.Rule], *, delta: model.Delta) -> interface.Judgement:
    """Rules whose expressions select metrics the target no longer exports (a histogram's ``_bucket``,
    ``_sum`` and ``_count`` too): they would go blind. What an expression says that the reader cannot
    follow (a ``__name__`` regex) is said as not evaluated."""
    gone = {series: metric for metric in delta.metrics_removed for series in metric.series()}
    target = next_release.target_text(delta)
    findings, unread = [], []
    for rule in rules:
        selection = promql.metric_names(rule.expr)
        if selection.problem:
            unread.append(f"{rule.subject}: {selection.problem}")
        for series in sorted(selection.names & gone.keys()):
            metric = gone[series]
            how = "hides it (deprecated)" if metric.change == "hidden" else "removes it"
            instead = f"; use {metric.replacement}" if metric.replacement else ""
            message = (
                f"selects {series}: {target} {how} from {', '.join(metric.components) or 'its components'}"
                f"{instead}; the rule would see no series"
            )
            findings.append(interface.Finding(NAME, rule.subject, message, "warning"))
    return interface.Judgement(NAME, tuple(findings), "; ".join(unread))


def judge(observed: interface.Evidence) -> interface.Judgement:
    rules = observed.rules
    return next_release.against_delta(NAME, lambda delta: alert_metrics(rules, delta=delta))(observed)


CHECK = checking.Check(name=NAME, needs=frozenset({"delta", "prometheus-rules"}), judge=judge)
