"""``agreement``: whether all masters agree on one version right now (the rule every controller applies,
without the settle window)."""

from __future__ import annotations

import argparse
from typing import Any

from controllers.agreement import masters
from controllers.cli import command, output
from controllers.kube import master_stores
from controllers.runtime import config, exits


def _master(name: str) -> command.Option:
    return command.config_option(config.BaseConfig, name)


# Which Nodes are masters and where their version comes from: `agreement` and `readiness` find them alike,
# with the controllers' own options.
MASTER_OPTIONS = (_master("master_selectors"), _master("version_source"))


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


def agreement_view(observation: masters.Observation) -> output.View:
    if observation.agreed and observation.version:
        verdict = f"masters agree on {observation.version.raw}"
    else:
        verdict = f"masters do NOT agree: {observation.reason}"
    rows = tuple(
        (
            m.name,
            m.reported + ("" if m.version or not m.reported else " (unparsed)"),
            "yes" if m.ready else "no",
        )
        for m in observation.masters
    )
    return output.View(lines=(verdict,), tables=(output.Table(("MASTER", "VERSION", "READY"), rows),))


async def run(args: argparse.Namespace, cluster: command.Cluster) -> output.Outcome:
    cfg = config.BaseConfig(
        master_selectors=args.master_selectors,
        version_source=args.version_source,
        min_masters=args.min_masters,
        require_ready=args.require_ready,
        once=True,  # no settle window
    )
    kube = await cluster.connect()
    statuses = await master_stores.current_masters(
        kube, selectors=cfg.master_selector_list, source=cfg.version_source
    )
    observation = masters.evaluate(statuses, rules=cfg.agreement_rules)
    return output.Outcome(
        code=exits.OK if observation.agreed else exits.BLOCKED,
        document=agreement_json(observation),
        brief=agreement_view(observation),
    )


COMMAND = command.Command(
    name="agreement",
    summary="whether all masters agree on one version now (exit 0 agreed, 1 not)",
    description="Print whether all masters agree on one version now: each master with its version and "
    "readiness, and the reason when they do not agree. The controllers apply the same rule, plus a settle "
    "window. Exit 0 when they agree, 1 when not.",
    run=run,
    options=(*MASTER_OPTIONS, _master("min_masters"), _master("require_ready")),
)
