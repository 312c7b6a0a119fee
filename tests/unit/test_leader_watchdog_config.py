"""leader-watchdog configuration: its own options, their checks, and what it watches."""

from __future__ import annotations

import pytest

from controllers.agreement import masters as agreement_masters
from controllers.kube import resources, watch
from controllers.leader_watchdog import watchdog
from controllers.runtime import config

PREFIX = "LEADER_WATCHDOG"


def load(*argv: str, environ: dict[str, str] | None = None) -> watchdog.WatchdogConfig:
    return config.load(
        watchdog.WatchdogConfig,
        argv,
        prog="leader-watchdog",
        prefix=PREFIX,
        description="",
        environ=environ or {},
    )


def test_defaults() -> None:
    cfg = load()
    assert cfg.leader_leases == ("kube-system/kube-controller-manager", "kube-system/kube-scheduler")
    assert cfg.checks == ("leaders", "apiservers", "endpoints", "heartbeats")
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
    ],
)
def test_bad_values_are_config_errors(argv: list[str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(*argv)


def test_streams_follow_the_enabled_checks() -> None:
    cfg = load("--checks", "leaders", "--leader-leases", "ns/a,ns/b")
    streams = watchdog.streams(cfg)
    assert set(streams) == {"nodes", "leader:ns/a", "leader:ns/b"}
    assert streams["leader:ns/a"].query == {"fieldSelector": "metadata.name=a"}
    assert set(watchdog.streams(load())) == {
        "nodes",
        "leader:kube-system/kube-controller-manager",
        "leader:kube-system/kube-scheduler",
        "apiservers",
        "endpoints",
        "heartbeats",
    }
    slices = watchdog.streams(load())["endpoints"]
    assert slices.resource == resources.ENDPOINT_SLICES
    assert slices.query == {"labelSelector": "kubernetes.io/service-name=kubernetes"}


def test_records_parse_events_into_a_snapshot() -> None:
    cfg = load("--leader-leases", "kube-system/kube-scheduler")
    records = watchdog.Records(cfg)
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
    records.apply("nodes", watch.WatchEvent("SYNC", objects=(master,)))
    records.apply("leader:kube-system/kube-scheduler", watch.WatchEvent("ADDED", object=lease))
    records.apply("endpoints", watch.WatchEvent("SYNC", objects=(ipv4,)))
    records.apply("endpoints", watch.WatchEvent("ADDED", object=ipv6))
    shot = records.snapshot(observation=None, agreed_version="v1.31.4")
    assert [m.name for m in shot.masters] == ["m1"]
    scheduler = shot.leaders["kube-system/kube-scheduler"]
    assert scheduler is not None and scheduler.holder == "m1_x"
    assert shot.endpoint_ips == ("10.0.0.1", "fd00::1")
    records.apply("leader:kube-system/kube-scheduler", watch.WatchEvent("DELETED", object=lease))
    records.apply("nodes", watch.WatchEvent("DELETED", object=master))
    records.apply("endpoints", watch.WatchEvent("SYNC", objects=()))
    shot = records.snapshot(observation=None, agreed_version=None)
    assert shot.leaders == {"kube-system/kube-scheduler": None} and shot.masters == ()
    assert shot.endpoint_ips is None  # no slice: not judged


def test_apiserver_version_source_takes_master_versions_from_the_agreement() -> None:
    records = watchdog.Records(load("--version-source", "apiserver"))
    node = {
        "metadata": {"name": "m1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {"nodeInfo": {"kubeletVersion": "v1.30.0"}},
    }
    records.apply("nodes", watch.WatchEvent("SYNC", objects=(node,)))
    observation = agreement_masters.Observation(
        masters=(agreement_masters.MasterStatus(name="m1", reported="v1.31.4", version=None, ready=True),),
        version=None,
    )
    assert [m.version for m in records.snapshot(observation=observation, agreed_version=None).masters] == [
        "v1.31.4"
    ]
    assert [m.version for m in records.snapshot(observation=None, agreed_version=None).masters] == [""]
