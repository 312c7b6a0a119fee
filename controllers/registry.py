"""The suite's controllers, listed once, each with its traits. Everything that names the controllers follows
this list: the CLI (``status``, ``run``), the demo, and the files ``make generate`` writes from it (the console
scripts and import-linter contracts in pyproject.toml, the chart's controller list and traits in
``templates/_registry.tpl``, the controllers' sections of ``values.schema.json``; ``make test`` fails when one
of them is stale)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from controllers.addon_updater import controller as addon_updater
from controllers.bundles import policy
from controllers.leader_watchdog import controller as leader_watchdog
from controllers.node_tainter import controller as node_tainter
from controllers.runtime import config, reconciler
from controllers.upgrade_readiness import controller as upgrade_readiness
from controllers.uso_runner import controller as uso_runner
from controllers.verdict_relay import controller as verdict_relay

# A controller's relation to the add-on bundles: "owns" (its values hold the bundle image; addon-updater),
# "reads" (it judges the next bundle where the owner finds its bundles; upgrade-readiness), or none.
Bundles = Literal["", "owns", "reads"]


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    controller: type[reconciler.Reconciler[Any]]
    values_key: str  # its section of the chart's values
    bundles: Bundles = ""
    # Its values have a ``mode``; mode "directory" runs it as a DaemonSet on the masters, writing a host
    # directory (addon-updater's addon directory) instead of the API.
    directory_mode: bool = False
    # It has namespaced RBAC rules of its own: ``kuc.namespaceRules.<values key>`` in the chart's _rules.tpl
    # (its cluster rules are ``kuc.rules.<values key>``).
    namespace_rules: bool = False
    # The chart sets some of its options from what it grants: ``kuc.chartOptions.<values key>`` in _rules.tpl.
    chart_options: bool = False
    # Its own flags in the demo (``make demo``; "{repo}" is the repository's root).
    demo_flags: tuple[str, ...] = ()
    # It belongs in a Cluster API management cluster, not in every cluster: off by default in the chart, left
    # out of ``run`` without names and out of the demo (which has no Cluster API).
    management_cluster: bool = False

    @property
    def name(self) -> str:
        """``node-tainter``: the console script, the state ConfigMap's and Lease's suffix, the log name."""
        return self.controller.name

    @property
    def package(self) -> str:
        """``node_tainter``: the package under ``controllers``, and the metrics prefix."""
        return self.controller.__module__.split(".")[1]

    @property
    def env_prefix(self) -> str:
        return config.env_prefix(self.name)

    @property
    def writes_state(self) -> bool:
        """Whether it writes a state ConfigMap (the chart grants it that one ConfigMap)."""
        return self.controller.writes_state


CONTROLLERS: tuple[Entry, ...] = (
    Entry(
        addon_updater.AddonUpdater,
        "addonUpdater",
        bundles="owns",
        directory_mode=True,
        # The example bundles are CoreDNS in kube-system (the demo's own namespace too: allowed by name) with a
        # custom resource of their own CRD (docs/addon-updater.md, "What a bundle may contain").
        demo_flags=(
            "--bundle-dir={repo}/examples/bundles",
            "--target=apply",
            "--health-timeout-seconds=5",
            "--variables=CLUSTER_DOMAIN=cluster.local,DNS_SERVICE_IP=10.0.0.10",
            "--allowed-namespaces=kube-system",
            f"--allowed-resources={','.join((*policy.DEFAULT_RESOURCES, 'forwardzones.dns.addons.example.io'))}",
        ),
    ),
    Entry(uso_runner.UsoRunner, "usoRunner", chart_options=True, demo_flags=("--workers=16",)),
    Entry(node_tainter.NodeTainter, "nodeTainter"),
    Entry(
        leader_watchdog.LeaderWatchdog,
        "leaderWatchdog",
        # The simulated masters are Node objects; the fixture's one real apiserver is not one of them, so the
        # apiserver-identity check is left out of the demo (the tests cover it).
        demo_flags=(
            "--checks=leaders,endpoints,heartbeats",
            "--heartbeat-stale-seconds=10",
            "--evaluate-interval-seconds=1",
        ),
    ),
    Entry(
        upgrade_readiness.UpgradeReadiness,
        "upgradeReadiness",
        bundles="reads",
        namespace_rules=True,
        demo_flags=("--evaluate-interval-seconds=5",),
    ),
    Entry(verdict_relay.VerdictRelay, "verdictRelay", chart_options=True, management_cluster=True),
)
NAMES: tuple[str, ...] = tuple(entry.name for entry in CONTROLLERS)
# What runs in every cluster: ``run`` without names, the demo.
EVERY_CLUSTER: tuple[str, ...] = tuple(entry.name for entry in CONTROLLERS if not entry.management_cluster)


def find(name: str) -> Entry:
    """The entry of ``name``; KeyError naming the known ones when there is none."""
    for entry in CONTROLLERS:
        if entry.name == name:
            return entry
    raise KeyError(f"{name!r} is not a controller (known: {', '.join(NAMES)})")
