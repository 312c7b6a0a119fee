"""leader-watchdog configuration: its own options, their checks, and what it watches."""

from __future__ import annotations

import pytest

from controllers.agreement import masters as agreement_masters
from controllers.kube import resources, watch
from controllers.leader_watchdog import controller
from controllers.runtime import config

PREFIX = "LEADER_WATCHDOG"


def load(*argv: str, environ: dict[str, str] | None = None) -> controller.LeaderWatchdogConfig:
    return config.load(
        controller.LeaderWatchdogConfig,
        argv,
        prog="leader-watchdog",
        prefix=PREFIX,
        description="",
        environ=environ or {},
    )


def test_defaults() -> None:
    cfg = load()
    assert cfg.leader_leases == ("kube-system/kube-controller-manager", "kube-system/kube-scheduler")
    assert cfg.checks == ("leaders", "apiservers", "endpoints", "heartbeats", "blind-alert-rules")
    assert cfg.prometheus_url == ""  # blind-alert-rules asks nothing without one
    assert cfg.rules.heartbeat_stale_seconds == 40 and cfg.evaluate_interval_seconds == 5


def test_flags_and_environment() -> None:
    cfg = load(
        "--leader-leases",
        "kube-system/cloud-controller-manager",
        "--heartbeat-stale-seconds",
        "3",
        environ={f"{PREFIX}_CHECKS": "leaders,heartbeats", f"{PREFIX}_NOTREADY_JUMP_FRACTION": "0.25"},
    )
    assert cfg.leader_leases == ("kube-system/cloud-controller-manager",)
    assert cfg.checks == ("leaders", "heartbeats")
    assert (cfg.rules.heartbeat_stale_seconds, cfg.rules.notready_jump_fraction) == (3.0, 0.25)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--leader-leases", "kube-scheduler"], "NAMESPACE/NAME"),
        (["--checks", "leaders,dns"], "unknown check(s) dns"),
        (["--heartbeat-stale-seconds", "0"], "must be > 0"),
        (["--notready-jump-fraction", "2"], "between 0 and 1"),
        (["--apiserver-selector", "a in (b"], "--apiserver-selector"),
        (["--prometheus-url", "prometheus:9090"], "http:// or https:// URL"),
        (["--prometheus-url", "https://user:secret@prometheus"], "no user, password"),
        (["--prometheus-url", "http://prometheus/?token=x"], "no user, password, query"),
        (["--prometheus-bearer-token-file", "/nonexistent/token"], "is not a file"),
        (["--blind-rules-window-seconds", "0"], "must be > 0"),
    ],
)
def test_bad_values_are_config_errors(argv: list[str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(*argv)


def test_streams_follow_the_enabled_checks() -> None:
    cfg = load("--checks", "leaders", "--leader-leases", "ns/a,ns/b")
    stores = controller.stores(cfg)
    assert set(stores) == {"nodes", "leader:ns/a", "leader:ns/b"}
    assert stores["leader:ns/a"].stream.query == {"fieldSelector": "metadata.name=a"}
    assert set(controller.stores(load())) == {
        "nodes",
        "leader:kube-system/kube-controller-manager",
        "leader:kube-system/kube-scheduler",
        "apiservers",
        "endpoints",
        "heartbeats",
    }
    slices = controller.stores(load())["endpoints"].stream
    assert slices.resource == resources.ENDPOINT_SLICES
    assert slices.query == {"labelSelector": "kubernetes.io/service-name=kubernetes"}


def test_stores_parse_events_into_a_snapshot() -> None:
    cfg = load("--leader-leases", "kube-system/kube-scheduler")
    stores = controller.stores(cfg)
    master = {
        "metadata": {"name": "m1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {
            "nodeInfo": {"kubeletVersion": "v1.31.4"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    lease = {
        "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
        "spec": {
            "holderIdentity": "m1_x",
            "leaseDurationSeconds": 15,
            "renewTime": "2026-11-22T01:00:00.000000Z",
        },
    }
    ipv4, ipv6 = (
        {"metadata": {"name": name, "namespace": "default"}, "endpoints": [{"addresses": [address]}]}
        for name, address in (("kubernetes", "10.0.0.1"), ("kubernetes-v6", "fd00::1"))
    )
    stores["nodes"].apply(watch.WatchEvent("SYNC", objects=(master,)))
    stores["leader:kube-system/kube-scheduler"].apply(watch.WatchEvent("ADDED", object=lease))
    stores["endpoints"].apply(watch.WatchEvent("SYNC", objects=(ipv4,)))
    stores["endpoints"].apply(watch.WatchEvent("ADDED", object=ipv6))
    shot = controller.snapshot(cfg, stores, observation=None, agreed_version="v1.31.4")
    assert [m.name for m in shot.masters] == ["m1"]
    scheduler = shot.leaders["kube-system/kube-scheduler"]
    assert scheduler is not None and scheduler.holder == "m1_x"
    assert shot.endpoint_ips == ("10.0.0.1", "fd00::1")
    stores["leader:kube-system/kube-scheduler"].apply(watch.WatchEvent("DELETED", object=lease))
    stores["nodes"].apply(watch.WatchEvent("DELETED", object=master))
    stores["endpoints"].apply(watch.WatchEvent("SYNC", objects=()))
    shot = controller.snapshot(cfg, stores, observation=None, agreed_version=None)
    assert shot.leaders == {"kube-system/kube-scheduler": None} and shot.masters == ()
    assert shot.endpoint_ips is None  # no slice: not judged


def test_apiserver_version_source_takes_master_versions_from_the_agreement() -> None:
    cfg = load("--version-source", "apiserver")
    stores = controller.stores(cfg)
    node = {
        "metadata": {"name": "m1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {"nodeInfo": {"kubeletVersion": "v1.30.0"}},
    }
    stores["nodes"].apply(watch.WatchEvent("SYNC", objects=(node,)))
    observation = agreement_masters.Observation(
        masters=(agreement_masters.MasterStatus(name="m1", reported="v1.31.4", version=None, ready=True),),
        version=None,
    )
    assert [
        m.version
        for m in controller.snapshot(cfg, stores, observation=observation, agreed_version=None).masters
    ] == ["v1.31.4"]
    assert [
        m.version for m in controller.snapshot(cfg, stores, observation=None, agreed_version=None).masters
    ] == [""]
