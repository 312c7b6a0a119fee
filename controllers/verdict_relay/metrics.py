"""verdict-relay's metrics; the rest of the package calls its ``observe_*`` methods, never prometheus_client."""

from __future__ import annotations

from collections.abc import Iterable

from controllers.runtime import metrics
from controllers.verdict_relay import logic

READ_OUTCOMES = ("verdict", "none")


class Metrics:
    def __init__(self, exporter: metrics.Exporter) -> None:
        gauge, counter = exporter.gauge, exporter.counter
        self.clusters = gauge(
            "clusters",
            "Cluster API Clusters by the state of their mirrored verdict: upgradeable, blocked (not upgradeable "
            "to its target), unread (no verdict could be read: every upgrade of it is refused).",
            "state",
        )
        self.reads = counter(
            "reads_total",
            "Reads of a workload cluster's verdict through its kubeconfig Secret, by outcome (verdict, none).",
            "outcome",
        )
        self.answers = counter(
            "hook_answers_total",
            "Cluster API lifecycle hooks answered by the Runtime Extension, by hook and answer (proceed, hold, "
            "failure).",
            "hook",
            "answer",
        )
        for state in logic.STATES:
            self.clusters.labels(state)
        for outcome in READ_OUTCOMES:
            self.reads.labels(outcome)
        for hook in logic.HANDLERS.values():
            for answer in logic.ANSWERS:
                self.answers.labels(hook, answer)

    def observe_states(self, states: Iterable[logic.VerdictState]) -> None:
        counts = dict.fromkeys(logic.STATES, 0)
        for state in states:
            counts[state] += 1
        for state, count in counts.items():
            self.clusters.labels(state).set(count)

    def observe_read(self, reading: logic.Reading) -> None:
        self.reads.labels("verdict" if reading.verdict is not None else "none").inc()

    def observe_answer(self, hook: str, answer: logic.Answer) -> None:
        self.answers.labels(hook, answer).inc()
