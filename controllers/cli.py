"""``kube-upgrade-controllers``: commands for people (the controllers have console scripts of their own).

kube-upgrade-controllers agreement --kubeconfig K [--source kubelet|apiserver] [--selector S] [--min-masters N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from controllers.agreement import masters, selector
from controllers.kube import client
from controllers.kube import masters as kube_masters


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_agreement(args))
    except client.ApiError as error:
        print(f"kube-upgrade-controllers: {error}", file=sys.stderr)
        return 1


def run() -> None:
    sys.exit(main())
