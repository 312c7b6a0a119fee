"""``kube-upgrade-controllers``: commands for people, and the controllers combined in one process (each
also has a console script of its own).

kube-upgrade-controllers agreement --kubeconfig K [--source kubelet|apiserver] [--selector S] [--min-masters N]
kube-upgrade-controllers status --kubeconfig K [--namespace NS] [--output table|json]
kube-upgrade-controllers readiness --kubeconfig K [--target-version v1.37] [--output table|json] [options]
kube-upgrade-controllers run [NAME ...] [options every controller has]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from controllers import registry
from controllers.agreement import masters, selector
from controllers.kube import client, state
from controllers.kube import masters as kube_masters
from controllers.runtime import app, reconciler
from controllers.runtime import config as config_module
from controllers.upgrade_readiness import controller as readiness

STATUS_COLUMNS = ("CONTROLLER", "NAMESPACE", "STATE CONFIGMAP", "VERSION", "PHASE", "PROGRESS", "UPDATED",
                  "LAST ERROR")  # fmt: skip
MISSING = "-"


def agreement_json(observation: masters.Observation) -> dict[str, Any]:
    result: dict[str, Any] = {
        "agreed": observation.agreed,
        "version": observation.version.raw if observation.version else None,
        "masters": [
            {"name": m.name, "version": m.reported or None, "ready": m.ready, "parsed": m.version is not None}
            for m in observation.masters
        ],
    }
    if not observation.agreed:
        result["reason"] = observation.reason
    return result


async def _agreement(args: argparse.Namespace) -> int:
    selectors = [selector.parse_selector(text) for text in args.selector or selector.DEFAULT_MASTER_SELECTORS]
    rules = masters.Rules(min_masters=args.min_masters, require_ready=not args.ignore_ready, settle_seconds=0)
    async with await client.connect(kubeconfig=args.kubeconfig) as kube:
        statuses = await kube_masters.current_masters(kube, selectors=selectors, source=args.source)
    observation = masters.evaluate(statuses, rules=rules)
    print(json.dumps(agreement_json(observation), indent=2))
    return 0 if observation.agreed else 1


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

    def cells(self, *, error_width: int) -> tuple[str, ...]:
        error = " ".join(self.last_error.split())  # one line, whatever the controller wrote
        if len(error) > error_width:
            error = error[: error_width - 1] + "…"
        cells = (self.controller, self.namespace, self.name, self.version, self.phase, self.progress,
                 self.updated, error)  # fmt: skip
        return tuple(cell or MISSING for cell in cells)


def status_rows(states: Iterable[state.State]) -> list[StatusRow]:
    """A row per state ConfigMap (the four controllers first, in their order), and a placeholder for each of
    the four that has none. Values are kept as written ("" when missing)."""
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
        rows.extend(sorted(found, key=lambda row: (row.namespace, row.name)) or [StatusRow(controller)])
    return rows


def _controller_of(name: str) -> str:
    """``<release>-<controller>-state`` → the controller (another one's name: the name without "-state")."""
    base = name.removesuffix("-state")
    return next((c for c in registry.NAMES if base.endswith(f"-{c}") or base == c), base)


def format_table(rows: Sequence[StatusRow], *, error_width: int = 80) -> str:
    table = [STATUS_COLUMNS, *(row.cells(error_width=error_width) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(STATUS_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table
    )


def status_json(rows: Sequence[StatusRow]) -> list[dict[str, str]]:
    keys = {"updated": "updatedAt", "last_error": "lastError"}  # the others are spelled alike
    return [{keys.get(k, k): v for k, v in dataclasses.asdict(row).items()} for row in rows]


async def _status(args: argparse.Namespace) -> int:
    async with await client.connect(kubeconfig=args.kubeconfig) as kube:
        states = await state.list_all(kube, namespace=args.namespace)
    rows = status_rows(states)
    if args.output == "json":
        print(json.dumps(status_json(rows), indent=2))
    else:
        print(format_table(rows))
    return 0


def _selector(text: str) -> str:
    try:
        selector.parse_selector(text)
    except selector.SelectorError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kube-upgrade-controllers", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    agreement = commands.add_parser(
        "agreement",
        help="print whether all masters agree on one version (exit 0 agreed, 1 not, 2 usage)",
        description="Print the masters' agreement now as one JSON object (no settle window). "
        "Exit 0 when all masters agree, 1 when not, 2 on a usage error.",
    )
    agreement.add_argument("--kubeconfig", help="kubeconfig path (default: in-cluster, else ~/.kube/config)")
    agreement.add_argument(
        "--source", choices=masters.VERSION_SOURCES, default="kubelet", help="version source"
    )
    agreement.add_argument(
        "--selector",
        action="append",
        type=_selector,
        help="master label selector; repeat for alternatives (default: the control-plane role label, "
        "or the legacy master role label)",
    )
    agreement.add_argument("--min-masters", type=int, default=1, help="masters that must exist (default 1)")
    agreement.add_argument("--ignore-ready", action="store_true", help="let NotReady masters agree too")
    agreement.set_defaults(handler=_agreement)
    status = commands.add_parser(
        "status",
        help="print what each controller last did, from its state ConfigMap",
        description="Print a table of the controllers: the last agreed version each acted on, its phase, "
        "progress, when it last wrote its state, and its last error; read from the state ConfigMaps "
        "<release>-<controller>-state. A controller without one shows 'no state'. Exit 0, or 1 on an API error.",
    )
    status.add_argument("--kubeconfig", help="kubeconfig path (default: in-cluster, else ~/.kube/config)")
    status.add_argument("--namespace", help="only this namespace (default: all namespaces)")
    status.add_argument("--output", "-o", choices=("table", "json"), default="table", help="output format")
    status.set_defaults(handler=_status)
    commands.add_parser(
        "readiness",
        add_help=False,  # --help shows upgrade-readiness's options
        help="judge once whether the cluster is ready for the next minor (exit 0 ready, 1 blocked, 2 bad config)",
        description=READINESS_HELP,
    )
    run = commands.add_parser(
        "run",
        add_help=False,  # --help goes on to the options every controller has
        help="run several controllers in one process (default: all of them)",
        description=COMBINED_HELP,
    )
    run.add_argument("names", nargs="*", metavar="NAME")
    return parser


COMBINED_HELP = (
    f"Run the named controllers ({', '.join(registry.NAMES)}; default: all) in one process: one API client "
    "and one metrics/health server (/metrics, /healthz, /readyz, /status, /status/NAME), each controller with "
    "its own agreement, state ConfigMap, Lease and metric prefix. The options below apply to every one of "
    "them; each reads the rest from its environment variables (<CONTROLLER>_...) and its config file "
    "(<CONTROLLER>_CONFIG). The process's own options also come from KUBE_UPGRADE_CONTROLLERS_*."
)


READINESS_HELP = (
    "Run upgrade-readiness's checks once against the next minor (the masters' minor + 1, or "
    "--target-version) and print a table, or one JSON document with --output json (-o json). Read-only: no "
    "state, no Events. Exit 0 when nothing blocks the upgrade, 1 when something does (or no target can be "
    "found), 2 on a bad configuration. Every option of upgrade-readiness below applies (also from "
    "UPGRADE_READINESS_* variables), e.g. --strict, --checks, --acknowledgements-config-map."
)
READINESS_COLUMNS = ("CHECK", "STATUS", "FINDINGS", "REASON")


def format_readiness(document: dict[str, Any], *, reason_width: int = 100) -> str:
    """The ``readiness`` table: a verdict line, then one row per check and one per finding."""
    verdict = "Upgradeable" if document["upgradeable"] else "NOT upgradeable"
    lines = [f"{verdict} to {document['target'] or '?'} ({document['targetReason']})"]
    rows = [READINESS_COLUMNS]
    for check in document["checks"]:
        reason = " ".join(check["reason"].split())
        reason = reason if len(reason) <= reason_width else reason[: reason_width - 1] + "…"
        rows.append((check["check"], check["status"], str(len(check["findings"])), reason or MISSING))
    widths = [max(len(row[i]) for row in rows) for i in range(len(READINESS_COLUMNS))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for check in document["checks"]:
        lines += [f"  {check['check']}: {f['subject']}: {f['message']}" for f in check["findings"]]
    return "\n".join(lines)


def _readiness(argv: Sequence[str]) -> int:
    output = argparse.ArgumentParser(prog="kube-upgrade-controllers readiness", add_help=False)
    output.add_argument("--output", "-o", choices=("table", "json"), default="table")
    args, rest = output.parse_known_args(argv)
    try:
        cfg = config_module.load(
            readiness.UpgradeReadinessConfig,
            [*rest, "--dry-run", "--once"],
            prog="kube-upgrade-controllers readiness",
            prefix=config_module.env_prefix(readiness.NAME),
            description=READINESS_HELP,
        )
    except config_module.ConfigError as error:
        print(f"kube-upgrade-controllers readiness: configuration error: {error}", file=sys.stderr)
        return reconciler.EXIT_CONFIG
    assert isinstance(cfg, readiness.UpgradeReadinessConfig)

    async def evaluate() -> tuple[bool, dict[str, Any]]:
        async with await client.connect(kubeconfig=cfg.kubeconfig or None) as kube:
            report, document = await readiness.evaluate_once(kube, cfg)
        return report.upgradeable, document

    upgradeable, document = asyncio.run(evaluate())
    print(json.dumps(document, indent=2) if args.output == "json" else format_readiness(document))
    return reconciler.EXIT_OK if upgradeable else reconciler.EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    if args.command == "readiness":
        try:
            return _readiness(rest)
        except client.ApiError as error:
            print(f"kube-upgrade-controllers readiness: {error}", file=sys.stderr)
            return reconciler.EXIT_FAILED
    if args.command == "run":
        try:
            chosen = [registry.find(name).controller for name in args.names or registry.NAMES]
        except KeyError as error:
            build_parser().error(str(error.args[0]))
        return app.main_combined(chosen, rest, description=COMBINED_HELP)
    if rest:
        build_parser().error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        code: int = asyncio.run(args.handler(args))
    except client.ApiError as error:
        print(f"kube-upgrade-controllers: {error}", file=sys.stderr)
        return 1
    return code


def run() -> None:
    sys.exit(main())
