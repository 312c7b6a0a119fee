"""``status``: what each controller last did, from its state ConfigMap (``<release>-<controller>-state``)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Sequence

from controllers import registry
from controllers.cli import command, output
from controllers.kube import state
from controllers.runtime import exits

ERROR_WIDTH = 60  # the last error, cut in the brief table (-o wide and the documents keep it whole)


@dataclasses.dataclass(frozen=True, slots=True)
class StatusRow:
    """One controller's state ConfigMap, or a placeholder row for a controller that has none."""

    controller: str
    namespace: str = ""
    name: str = ""
    version: str = ""
    phase: str = "no state"
    progress: str = ""
    updated: str = ""
    last_error: str = ""


def status_rows(states: Iterable[state.State]) -> list[StatusRow]:
    """A row per state ConfigMap (the registry's controllers first, in their order), and a placeholder for each
    controller of a workload cluster that has none (a management cluster's, the verdict relay, shows only where
    it runs). Values are kept as written ("" when missing)."""
    by_controller: dict[str, list[StatusRow]] = {name: [] for name in registry.NAMES}
    for item in states:
        controller = _controller_of(item.name)
        by_controller.setdefault(controller, []).append(
            StatusRow(
                controller=controller,
                namespace=item.namespace,
                name=item.name,
                version=item.get("version"),
                phase=item.get("phase"),
                progress=item.get("progress"),
                updated=item.get("updatedAt"),
                last_error=item.get("lastError"),
            )
        )
    rows: list[StatusRow] = []
    for controller, found in by_controller.items():
        if found or controller in registry.EVERY_CLUSTER:
            rows.extend(sorted(found, key=lambda row: (row.namespace, row.name)) or [StatusRow(controller)])
    return rows


def _controller_of(name: str) -> str:
    """``<release>-<controller>-state`` → the controller (another one's name: the name without "-state")."""
    base = name.removesuffix("-state")
    return next((c for c in registry.NAMES if base.endswith(f"-{c}") or base == c), base)


def status_view(rows: Sequence[StatusRow], *, full: bool) -> output.View:
    """The brief table, or (``full``) with the state ConfigMap's name and the whole last error."""
    columns = ["CONTROLLER", "NAMESPACE", "VERSION", "PHASE", "PROGRESS", "UPDATED", "LAST ERROR"]
    cells = [
        [row.controller, row.namespace, row.version, row.phase, row.progress, row.updated,
         row.last_error if full else output.clip(row.last_error, ERROR_WIDTH)]
        for row in rows
    ]  # fmt: skip
    if full:
        columns.insert(2, "STATE CONFIGMAP")
        for row, line in zip(rows, cells, strict=True):
            line.insert(2, row.name)
    return output.View(tables=(output.Table(tuple(columns), tuple(map(tuple, cells))),))


def status_json(rows: Sequence[StatusRow]) -> list[dict[str, str]]:
    keys = {"updated": "updatedAt", "last_error": "lastError"}  # the others are spelled alike
    return [{keys.get(k, k): v for k, v in dataclasses.asdict(row).items()} for row in rows]


async def run(args: argparse.Namespace, cluster: command.Cluster) -> output.Outcome:
    kube = await cluster.connect()
    rows = status_rows(await state.list_all(kube, namespace=args.namespace))
    return output.Outcome(
        code=exits.OK,
        document=status_json(rows),
        brief=status_view(rows, full=False),
        full=status_view(rows, full=True),
    )


COMMAND = command.Command(
    name="status",
    summary="what each controller last did, from its state ConfigMap",
    description="Print what each controller last did: the agreed version it acted on, its phase and "
    "progress, when it last wrote its state, and its last error; read from the state ConfigMaps "
    "<release>-<controller>-state. A controller without one shows 'no state'. Exit 0 once shown.",
    run=run,
    outputs=output.WITH_WIDE,
    namespace="only the state ConfigMaps in this namespace (default: all namespaces)",
)
