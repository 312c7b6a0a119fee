"""The pure parts of the kind scenario's monitoring checks (e2e/kind/monitoring.py): how a range query of the
upgrade signal becomes a phase sequence, how the recorder's notifications become deliveries, where the stack's
pods are pinned. Their use against a real Prometheus is the kind scenario's (``make e2e MONITORING=1``)."""

from __future__ import annotations

from typing import Any

import yaml

from e2e.kind import monitoring
from e2e.monitoring import stack

WATCHDOG = "kuc-kube-upgrade-controllers-leader-watchdog"


def series(job: str, stamps: list[int], **labels: str) -> dict[str, Any]:
    return {"metric": {"job": job, **labels}, "values": [[stamp, "1"] for stamp in stamps]}


def test_phases_merge_repeats_and_a_step_without_a_scrape_says_nothing() -> None:
    scraped = [series(WATCHDOG, [0, 5, 10, 15, 20, 35, 40, 45, 50])]  # not scraped at 25, 30 (drained)
    signal = [
        series(WATCHDOG, [10, 15], phase="control-plane"),
        series(WATCHDOG, [20, 35, 40], phase="workers"),
    ]
    sequences = monitoring.phase_sequences(signal=signal, scraped=scraped)
    assert sequences == {WATCHDOG: ["none", "control-plane", "workers", "none"]}


def test_two_phases_at_one_step_and_a_flap_are_kept() -> None:
    scraped = [series(WATCHDOG, [0, 5, 10, 15])]
    signal = [
        series(WATCHDOG, [0, 5], phase="control-plane"),
        series(WATCHDOG, [5, 15], phase="workers"),
    ]
    sequences = monitoring.phase_sequences(signal=signal, scraped=scraped)
    assert sequences == {WATCHDOG: ["control-plane", "control-plane+workers", "none", "workers"]}


def test_a_job_never_signalling_is_all_none_and_other_jobs_do_not_leak() -> None:
    scraped = [series("a", [0, 5]), series("b", [0, 5])]
    signal = [series("a", [5], phase="workers")]
    assert monitoring.phase_sequences(signal=signal, scraped=scraped) == {
        "a": ["none", "workers"],
        "b": ["none"],
    }


def test_deliveries_one_per_alert_with_latency_after_starts_at() -> None:
    records = [
        {
            "received": 1796585410.5,
            "payload": {
                "receiver": "uninhibited",
                "alerts": [
                    {"status": "firing", "labels": {"alertname": "X"}, "startsAt": "2026-12-06T19:30:00.123456789Z"},
                    {"status": "resolved", "labels": {"alertname": "Y"}, "startsAt": "2026-12-06T19:29:00Z"},
                ]
            },
        }
    ]  # fmt: skip
    first, second = monitoring.deliveries_of(records)
    assert (first.alert, first.status, round(first.latency, 3)) == ("X", "firing", 10.377)
    assert first.receiver == second.receiver == "uninhibited"
    assert (second.alert, second.status, second.latency) == ("Y", "resolved", 70.5)


def test_every_pod_of_the_stack_is_pinned_and_tolerates_the_control_plane() -> None:
    objects = [
        {"kind": "Deployment", "spec": {"template": {"spec": {"containers": []}}}},
        {"kind": "Prometheus", "spec": {"replicas": 1}},
        {"kind": "Alertmanager", "spec": {"replicas": 1}},
        {"kind": "Service", "spec": {"ports": []}},
    ]
    deployment, prometheus, alertmanager, service = monitoring.pinned(objects, node="cp-1")
    for spec in (deployment["spec"]["template"]["spec"], prometheus["spec"], alertmanager["spec"]):
        assert spec["nodeSelector"] == {"kubernetes.io/hostname": "cp-1"}
        assert spec["tolerations"] == [monitoring.CONTROL_PLANE_TOLERATION]
    assert service == objects[3]
    assert "nodeSelector" not in objects[1]["spec"]  # the input is left alone


def test_dashboard_variables_longest_name_first() -> None:
    expr = 'rate(x{cluster=~"$cluster",namespace=~"$namespace"}[$__rate_interval])'
    filled = monitoring.fill_variables(
        expr, {"cluster": "", "namespace": "a|b", "__rate_interval": "1m", "name": "no"}
    )
    assert filled == 'rate(x{cluster=~"",namespace=~"a|b"}[1m])'


def test_two_alertmanagers_one_with_the_inhibit_rules_one_without_each_its_receiver() -> None:
    images = stack.Images(prometheus="p:v1", alertmanager="a:v0.31.1", operator="o:v1", reloader="r:v1",
                          kube_state_metrics="k:v1", controller="c:v1")  # fmt: skip
    objects = stack.alertmanager(images)
    managers = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Alertmanager"}
    assert "alertmanagerConfigSelector" in managers["main"]
    assert "alertmanagerConfigSelector" not in managers["control"]  # nil: no AlertmanagerConfig at all
    configs = {
        o["metadata"]["name"]: yaml.safe_load(o["stringData"]["alertmanager.yaml"])
        for o in objects
        if o["kind"] == "Secret"
    }
    assert configs["alertmanager-main-base"]["route"]["receiver"] == stack.RECEIVER
    assert configs["alertmanager-control-base"]["route"]["receiver"] == stack.UNINHIBITED
    assert all("inhibit_rules" not in config for config in configs.values())
    services = {o["metadata"]["name"]: o["spec"]["selector"] for o in objects if o["kind"] == "Service"}
    assert services == {
        "alertmanager-main": {"alertmanager": "main"},
        "alertmanager-control": {"alertmanager": "control"},
    }
    assert monitoring.ALERTMANAGER.startswith("alertmanager-main:")
