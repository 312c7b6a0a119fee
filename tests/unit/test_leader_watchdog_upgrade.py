"""The upgrade signal, pure: every transition of ``logic.upgrade_progress`` through ``logic.evaluate``, and
the one series at 1 the metrics keep for it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import prometheus_client
import pytest

from controllers.leader_watchdog import logic
from controllers.leader_watchdog import metrics as watchdog_metrics
from controllers.leader_watchdog.checks import interface
from controllers.runtime import metrics as runtime_metrics

T0 = 1_800_000_000.0
RULES = interface.Thresholds()


def master(name: str, version: str) -> interface.NodeRecord:
    return interface.NodeRecord(name=name, master=True, ready=True, version=version)


def worker(name: str, version: str) -> interface.NodeRecord:
    return interface.NodeRecord(name=name, master=False, ready=True, version=version)


@dataclasses.dataclass
class Cluster:
    """Feeds one evaluation after another, as the controller does, and keeps the history between them."""

    history: logic.History = dataclasses.field(default_factory=logic.History)
    now: float = T0

    def see(
        self, nodes: Sequence[interface.NodeRecord], *, agreed: str | None, after: float = 10.0
    ) -> logic.Upgrade | None:
        self.now += after
        shot = interface.Snapshot(
            leaders={},
            apiservers=(),
            heartbeats={},
            nodes=tuple(nodes),
            endpoint_ips=None,
            agreed_version=agreed,
        )
        evaluation = logic.evaluate(shot, now=self.now, rules=RULES, history=self.history)
        self.history = evaluation.history
        return evaluation.upgrade


def state(upgrade: logic.Upgrade | None) -> tuple[str, str, str] | None:
    return None if upgrade is None else (upgrade.phase, upgrade.from_version, upgrade.to_version)


OLD, NEW = "v1.36.1", "v1.37.2"


def agreed_cluster(version: str = OLD, *, workers: str = OLD) -> Cluster:
    cluster = Cluster()
    assert (
        cluster.see(
            [master("m1", version), master("m2", version), worker("w1", workers), worker("w2", workers)],
            agreed=version,
        )
        is None
    )
    return cluster


def test_a_rolling_upgrade_goes_control_plane_then_workers_then_done() -> None:
    cluster = agreed_cluster()
    first = cluster.see(
        [master("m1", NEW), master("m2", OLD), worker("w1", OLD), worker("w2", OLD)], agreed=None
    )
    assert state(first) == ("control-plane", OLD, NEW)
    assert first is not None and first.started == cluster.now
    # Still mixed, then all masters on NEW but not settled yet: the same phase, its start kept.
    later = cluster.see(
        [master("m1", NEW), master("m2", OLD), worker("w1", OLD), worker("w2", OLD)], agreed=None
    )
    assert later == first
    assert (
        cluster.see([master("m1", NEW), master("m2", NEW), worker("w1", OLD), worker("w2", OLD)], agreed=None)
        == first
    )
    # The masters agree on NEW: workers below it.
    workers = cluster.see(
        [master("m1", NEW), master("m2", NEW), worker("w1", OLD), worker("w2", OLD)], agreed=NEW
    )
    assert state(workers) == ("workers", OLD, NEW)
    assert workers is not None and workers.started == cluster.now
    assert (
        cluster.see([master("m1", NEW), master("m2", NEW), worker("w1", NEW), worker("w2", OLD)], agreed=NEW)
        == workers
    )
    assert (
        cluster.see([master("m1", NEW), master("m2", NEW), worker("w1", NEW), worker("w2", NEW)], agreed=NEW)
        is None
    )


def test_no_upgrade_when_masters_agree_and_workers_are_current() -> None:
    cluster = agreed_cluster()
    assert cluster.see([master("m1", OLD), master("m2", OLD), worker("w1", OLD)], agreed=OLD) is None


def test_losing_agreement_without_a_version_change_is_no_upgrade() -> None:
    """A master NotReady (or fewer than minMasters) ends the agreement, but nothing moved."""
    cluster = agreed_cluster()
    assert cluster.see([master("m1", OLD), worker("w1", OLD)], agreed=None) is None


def test_all_masters_at_once_skips_to_workers_from_the_old_agreement() -> None:
    """One master replaced between two evaluations: no mixed moment was seen, the workers phase still says
    from where."""
    cluster = agreed_cluster()
    assert state(cluster.see([master("m1", NEW), worker("w1", OLD)], agreed=NEW)) == ("workers", OLD, NEW)


def test_a_patch_upgrade_counts() -> None:
    cluster = agreed_cluster()
    assert state(cluster.see([master("m1", "v1.36.2"), master("m2", OLD)], agreed=None)) == (
        "control-plane",
        OLD,
        "v1.36.2",
    )


def test_a_downgrade_has_a_control_plane_phase_and_no_workers_phase() -> None:
    cluster = agreed_cluster(NEW, workers=NEW)
    down = cluster.see([master("m1", OLD), master("m2", NEW), worker("w1", NEW)], agreed=None)
    assert state(down) == ("control-plane", NEW, OLD)
    assert cluster.see([master("m1", OLD), master("m2", OLD), worker("w1", NEW)], agreed=OLD) is None


def test_a_master_removed_mid_way_leaves_the_others_to_decide() -> None:
    cluster = agreed_cluster()
    nodes = [master("m1", NEW), master("m2", OLD), master("m3", OLD), worker("w1", OLD)]
    assert state(cluster.see(nodes, agreed=None)) == ("control-plane", OLD, NEW)
    # m2 (old) removed: m1 new, m3 old still disagree.
    assert state(cluster.see([nodes[0], nodes[2], nodes[3]], agreed=None)) == ("control-plane", OLD, NEW)
    # m3 removed as well: the masters that remain agree on NEW.
    assert state(cluster.see([nodes[0], nodes[3]], agreed=NEW)) == ("workers", OLD, NEW)


def test_the_only_upgraded_master_removed_is_an_aborted_upgrade() -> None:
    cluster = agreed_cluster()
    nodes = [master("m1", NEW), master("m2", OLD), master("m3", OLD), worker("w1", OLD)]
    started = cluster.see(nodes, agreed=None)
    # The new master is gone; until the old ones agree again (the settle window) the phase holds.
    assert cluster.see(nodes[1:], agreed=None) == started
    assert cluster.see(nodes[1:], agreed=OLD) is None


def test_the_target_follows_the_masters() -> None:
    """A second, newer version appears among the masters mid-way: `to` names it, the start stays."""
    cluster = agreed_cluster()
    first = cluster.see([master("m1", NEW), master("m2", OLD)], agreed=None)
    newer = cluster.see([master("m1", NEW), master("m2", "v1.37.3")], agreed=None)
    assert state(newer) == ("control-plane", OLD, "v1.37.3")
    assert first is not None and newer is not None and newer.started == first.started


def test_an_unparseable_master_version_neither_starts_nor_ends_a_phase() -> None:
    cluster = agreed_cluster()
    assert cluster.see([master("m1", "garbage"), master("m2", OLD)], agreed=None) is None
    started = cluster.see([master("m1", NEW), master("m2", OLD)], agreed=None)
    assert state(started) == ("control-plane", OLD, NEW)
    assert cluster.see([master("m1", NEW), master("m2", "")], agreed=None) == started


def test_an_unparseable_worker_version_is_not_behind() -> None:
    cluster = agreed_cluster()
    cluster.see([master("m1", NEW), master("m2", OLD), worker("w1", "")], agreed=None)
    assert cluster.see([master("m1", NEW), master("m2", NEW), worker("w1", "unknown")], agreed=NEW) is None


def test_versions_are_written_without_vendor_suffix() -> None:
    cluster = agreed_cluster("v1.30.2+k3s1", workers="v1.30.2+k3s1")
    upgrade = cluster.see([master("m1", "v1.31.0-eks-1234abc"), master("m2", "v1.30.2+k3s1")], agreed=None)
    assert state(upgrade) == ("control-plane", "v1.30.2", "v1.31.0")


@pytest.mark.parametrize(
    ("nodes", "agreed", "expected"),
    [
        # Started while the masters are mixed: lowest to highest.
        ([master("m1", NEW), master("m2", OLD), worker("w1", OLD)], None, ("control-plane", OLD, NEW)),
        # Started after the masters agree again, workers behind: from the lowest worker.
        ([master("m1", NEW), worker("w1", OLD), worker("w2", "v1.35.4")], NEW, ("workers", "v1.35.4", NEW)),
        # Started with the masters agreeing but not settled yet: nothing to say yet.
        ([master("m1", NEW), master("m2", NEW), worker("w1", OLD)], None, None),
    ],
)
def test_a_restart_of_the_watchdog_mid_upgrade_resumes_from_what_it_sees(
    nodes: list[interface.NodeRecord], agreed: str | None, expected: tuple[str, str, str] | None
) -> None:
    assert state(Cluster().see(nodes, agreed=agreed)) == expected


def test_status_shows_the_upgrade() -> None:
    cluster = agreed_cluster()
    shot = interface.Snapshot(
        leaders={},
        apiservers=(),
        heartbeats={},
        nodes=(master("m1", NEW), master("m2", OLD)),
        endpoint_ips=None,
    )
    evaluation = logic.evaluate(shot, now=T0 + 100, rules=RULES, history=cluster.history)
    assert logic.status_json(evaluation, shot, now=T0 + 100)["upgrade"] == {
        "phase": "control-plane",
        "from": OLD,
        "to": NEW,
        "started": "2027-01-15T08:01:40.000000Z",
    }


def samples(
    registry: prometheus_client.CollectorRegistry, name: str
) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset(sample.labels.items()): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_metrics_keep_one_series_at_one_and_none_when_done() -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = watchdog_metrics.Metrics(
        runtime_metrics.Exporter(prefix="leader_watchdog", registry=registry), leader_leases=()
    )
    in_progress, started = (
        "leader_watchdog_upgrade_in_progress",
        "leader_watchdog_upgrade_started_timestamp_seconds",
    )
    assert samples(registry, in_progress) == {}
    metrics.observe_upgrade(logic.Upgrade("control-plane", OLD, NEW, started=T0))
    metrics.observe_upgrade(logic.Upgrade("workers", OLD, NEW, started=T0 + 60))
    assert samples(registry, in_progress) == {
        frozenset({("phase", "workers"), ("from", OLD), ("to", NEW)}): 1.0,
    }
    assert samples(registry, started) == {frozenset({("phase", "workers")}): T0 + 60}
    metrics.observe_upgrade(None)
    assert samples(registry, in_progress) == {}
    assert samples(registry, started) == {}
