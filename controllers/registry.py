"""The suite's controllers, listed once: the CLI (``status``, ``run``), the demo, the chart tests and the
console scripts (checked against pyproject.toml) all follow this list and its order."""

from __future__ import annotations

import dataclasses
from typing import Any

from controllers.addon_updater import controller as addon_updater
from controllers.leader_watchdog import controller as leader_watchdog
from controllers.node_tainter import controller as node_tainter
from controllers.runtime import config, reconciler
from controllers.upgrade_readiness import controller as upgrade_readiness
from controllers.uso_runner import controller as uso_runner


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    controller: type[reconciler.Reconciler[Any]]
    values_key: str  # its section of the chart's values

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


CONTROLLERS: tuple[Entry, ...] = (
    Entry(addon_updater.AddonUpdater, "addonUpdater"),
    Entry(uso_runner.UsoRunner, "usoRunner"),
    Entry(node_tainter.NodeTainter, "nodeTainter"),
    Entry(leader_watchdog.LeaderWatchdog, "leaderWatchdog"),
    Entry(upgrade_readiness.UpgradeReadiness, "upgradeReadiness"),
)
NAMES: tuple[str, ...] = tuple(entry.name for entry in CONTROLLERS)


def find(name: str) -> Entry:
    """The entry of ``name``; KeyError naming the known ones when there is none."""
    for entry in CONTROLLERS:
        if entry.name == name:
            return entry
    raise KeyError(f"{name!r} is not a controller (known: {', '.join(NAMES)})")
