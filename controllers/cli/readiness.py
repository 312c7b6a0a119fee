"""``readiness``: upgrade-readiness's checks once, for a person or a pipeline (read-only: no state, no Events),
with the acknowledgements of the release it finds."""

from __future__ import annotations

import argparse
from typing import Any

from controllers.cli import ack, agreement, command, output, releases
from controllers.runtime import exits
from controllers.upgrade_readiness import controller as upgrade_readiness

Config = upgrade_readiness.UpgradeReadinessConfig
REASON_WIDTH = 100  # a cell of the brief table
SHOWN = 5  # findings per check in the brief table (-o wide and the documents list every one)
# The controller's options the command offers, as the controller spells them; the rest are a daemon's.
JUDGEMENT = ("target_version", "checks", "strict")
BUNDLES = ("bundle_source", "bundle_dir", "bundle_namespace", "bundle_selection", "variables",
           "variables_config_map")  # fmt: skip


def readiness_view(document: dict[str, Any], *, acknowledgements: str, full: bool) -> output.View:
    """A verdict line, the release delta the checks compared with (saying when the target is a prerelease),
    where the acknowledgements came from, a row per check, a row per finding with its severity (the brief
    view cuts long reasons and shows the first SHOWN findings of each check), and a row per acknowledgement
    key with its state (active, expired, other-target, unknown, malformed)."""
    verdict = "Upgradeable" if document["upgradeable"] else "NOT upgradeable"
    lines = [f"{verdict} to {document['target'] or '?'} ({document['targetReason']})"]
    if delta := document.get("releaseDelta"):
        prerelease = f": the target is a prerelease ({delta['to']})" if delta["prerelease"] else ""
        lines.append(f"Compared with the release delta {delta['from']} -> {delta['to']}{prerelease}")
    lines.append(acknowledgements)

    def cut(text: str) -> str:
        return text if full else output.clip(text, REASON_WIDTH)

    checks = tuple(
        (c["check"], c["status"], str(len(c["findings"])), cut(c["reason"])) for c in document["checks"]
    )
    findings: list[tuple[str, str, str, str]] = []
    for check in document["checks"]:
        listed = check["findings"] if full else check["findings"][:SHOWN]
        findings += [(check["check"], f["severity"], f["subject"], cut(f["message"])) for f in listed]
        if hidden := len(check["findings"]) - len(listed):
            findings.append((check["check"], "", f"(+{hidden} more)", "-o wide lists every finding"))
    acks = tuple(
        (str(a.get("key", "")), str(a.get("state", "")), str(a.get("until", "")),
         cut(str(a.get("problem") or a.get("reason") or "")))
        for a in document.get("acknowledgements") or []
    )  # fmt: skip
    tables = [output.Table(("CHECK", "STATUS", "FINDINGS", "REASON"), checks)]
    if findings:
        tables.append(output.Table(("CHECK", "SEVERITY", "SUBJECT", "FINDING"), tuple(findings)))
    if acks:
        tables.append(output.Table(("ACKNOWLEDGEMENT", "STATE", "UNTIL", "REASON OR PROBLEM"), acks))
    return output.View(lines=tuple(lines), tables=tuple(tables))


async def run(args: argparse.Namespace, cluster: command.Cluster) -> output.Outcome:
    kube = await cluster.connect()
    acks = await releases.find(
        kube, namespace=args.namespace, release=args.release, name=args.acknowledgements_config_map
    )
    cfg = Config(
        dry_run=True,  # read-only: no state, no Events
        once=True,
        namespace=acks.namespace,
        release=acks.prefix,
        acknowledgements_config_map=acks.name,
        master_selectors=args.master_selectors,
        version_source=args.version_source,
        **{name: getattr(args, name) for name in JUDGEMENT + BUNDLES},
    )
    report, status = await upgrade_readiness.evaluate_once(kube, cfg)
    document = {**status, "acknowledgementsConfigMap": acks.summary()}
    return output.Outcome(
        code=exits.OK if report.upgradeable else exits.BLOCKED,
        document=document,
        brief=readiness_view(document, acknowledgements=acks.line(), full=False),
        full=readiness_view(document, acknowledgements=acks.line(), full=True),
    )


COMMAND = command.Command(
    name="readiness",
    summary="whether the cluster is ready for the next minor (exit 0 ready, 1 blocked)",
    description="Run upgrade-readiness's checks once against the next minor (the masters' minor + 1, or "
    "--target-version): removed APIs still requested, kubelets outside the skew policy, CRDs storing an "
    "unserved version, PodDisruptionBudgets that would block the drains, the next add-on bundle, and what "
    "the target's release delta removes that the cluster uses (feature gates, flags, the kubeadm "
    "configuration's API version, metrics its alert rules select; the etcd and CoreDNS it installs: "
    "information). The output names the release delta used and says when the target is a prerelease. "
    "Read-only. The acknowledgements are those of the chart's release: found from its objects (in any "
    "namespace, or in -n), or named as the chart names them for --release and -n; the output says which "
    "ConfigMap it used. Exit 0 when nothing blocks the upgrade, 1 when something does (or no target "
    "version can be found). 'readiness ack' acknowledges a blocker for one target minor until a time.",
    run=run,
    outputs=output.WITH_WIDE,
    namespace="namespace of the chart's release (default: the one release found, in any namespace)",
    subcommands=(ack.COMMAND,),
    options=(
        *(command.config_option(Config, name) for name in JUDGEMENT),
        command.option(
            "--release", metavar="NAME",
            help="the chart's release whose acknowledgements apply: its Helm release name, or its objects' "
            "prefix (default: the one release found)",
        ),
        command.option(
            "--acknowledgements-config-map", metavar="NAME",
            help="the acknowledgements ConfigMap, in the release's namespace (default: the release's)",
        ),
        *agreement.MASTER_OPTIONS,
        *(command.config_option(Config, name) for name in BUNDLES),
    ),
)  # fmt: skip
