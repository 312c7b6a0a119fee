"""``readiness ack``: acknowledge upgrade-readiness's blockers for one target minor until a time (or revoke it),
writing exactly the keys the controller reads (``logic.ack_key``/``logic.ack_value``) into the release's
acknowledgements ConfigMap. Who may do it is RBAC on that ConfigMap (docs/upgrade-gate.md)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from controllers.agreement.version import Version
from controllers.cli import command, output, releases
from controllers.kube import client, resources
from controllers.runtime import exits
from controllers.structs import times
from controllers.upgrade_readiness import checks, logic

FIELD_MANAGER = "kube-upgrade-controllers-readiness-ack"


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """What ``readiness ack`` was asked, checked: the keys to set (a value) or to remove (None)."""

    target: Version
    revoke: bool
    changes: Mapping[str, str | None]


def plan(
    *, target: str, until: str | None, names: Sequence[str], reason: str, revoke: bool, now: float
) -> Request:
    """The keys for the checks ``names`` (all of them when empty) and ``target``; a :class:`command.UsageError` for
    anything that would write what the controller cannot read, or an acknowledgement already expired."""
    parsed = logic.parse_target(target)
    if parsed is None:
        raise command.UsageError(f"--target {target!r} is not a minor such as v1.38")
    known = checks.TABLE.names
    unknown = [name for name in names if name not in known]
    if unknown:
        raise command.UsageError(
            f"--checks: unknown check(s) {', '.join(unknown)} (known: {', '.join(known)})"
        )
    chosen = list(dict.fromkeys(names)) or list(known)
    keys = [logic.ack_key(target=parsed, check=name) for name in chosen]
    if revoke:
        if until is not None or reason:
            raise command.UsageError("--revoke takes no --until or --reason: it removes the acknowledgements")
        return Request(parsed, True, dict.fromkeys(keys))
    if until is None:
        raise command.UsageError(
            "--until is required: an acknowledgement expires (RFC 3339 with a time zone, e.g. "
            "2026-12-01T00:00:00Z)"
        )
    moment = _until(until)
    if moment.timestamp() <= now:
        raise command.UsageError(f"--until {until} is not in the future")
    try:
        value = logic.ack_value(until=moment, reason=reason)
    except ValueError as error:
        raise command.UsageError(f"--until: {error}") from error
    if len(value) > logic.MAX_ACK_VALUE:
        raise command.UsageError(f"--reason is too long: the value may hold {logic.MAX_ACK_VALUE} characters")
    return Request(parsed, False, dict.fromkeys(keys, value))


def _until(text: str) -> datetime.datetime:
    moment = times.parse_rfc3339(text)
    if moment is None:
        raise command.UsageError(
            f"--until {text!r} is not an RFC 3339 time with a time zone, e.g. 2026-12-01T00:00:00Z"
        )
    return datetime.datetime.fromtimestamp(moment, datetime.UTC)


async def write(kube: client.Kube, *, namespace: str, name: str, changes: Mapping[str, str | None]) -> bool:
    """Set or remove ``changes`` in the ConfigMap, other keys untouched (a merge patch); creates it when
    missing and something is to be set. Returns whether the ConfigMap exists afterwards."""
    path = resources.CONFIGMAPS.path(namespace=namespace, name=name)
    try:
        await kube.patch(path, {"data": dict(changes)}, field_manager=FIELD_MANAGER)
        return True
    except client.ApiError as error:
        if not error.not_found:
            raise
    setting = {key: value for key, value in changes.items() if value is not None}
    if not setting:
        return False  # nothing to revoke
    body = {"metadata": {"name": name, "namespace": namespace}, "data": setting}
    try:
        await kube.create(resources.CONFIGMAPS.path(namespace=namespace), body)
    except client.ApiError as error:
        if error.status != 403:
            raise
        message = (
            f"{error.body.get('message') or 'forbidden'}; the acknowledgements ConfigMap {namespace}/{name} "
            "does not exist: the chart creates it with upgradeReadiness.acknowledgers.enabled"
        )
        raise client.ApiError(status=403, body={**error.body, "message": message}) from error
    return True


def ack_view(document: Mapping[str, Any]) -> output.View:
    where = document["configMap"]
    if document["revoke"]:
        line = f"revoked the acknowledgements for {document['target']} in ConfigMap {where}"
        if not document["exists"]:
            line = f"nothing to revoke: ConfigMap {where} does not exist"
    else:
        line = f"acknowledged for {document['target']} in ConfigMap {where} (upgrade-readiness judges again at once)"
    rows = tuple(
        (key, value if value is not None else "(removed)") for key, value in document["keys"].items()
    )
    return output.View(lines=(line, document["foundBy"]), tables=(output.Table(("KEY", "VALUE"), rows),))


async def run(args: argparse.Namespace, cluster: command.Cluster) -> output.Outcome:
    request = plan(
        target=args.target,
        until=args.until,
        names=args.checks,
        reason=args.reason or "",
        revoke=args.revoke,
        now=datetime.datetime.now(datetime.UTC).timestamp(),
    )
    kube = await cluster.connect()
    acks = await releases.find(
        kube, namespace=args.namespace, release=args.release, name=args.acknowledgements_config_map
    )
    exists = await write(kube, namespace=acks.namespace, name=acks.name, changes=request.changes)
    acks = dataclasses.replace(acks, exists=exists)  # as it is now, written
    document = {
        "target": request.target.minor_text,
        "revoke": request.revoke,
        "configMap": f"{acks.namespace}/{acks.name}",
        "foundBy": acks.line(),
        "keys": dict(request.changes),
        "exists": exists,
    }
    return output.Outcome(code=exits.OK, document=document, brief=ack_view(document))


def _checks(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


COMMAND = command.Command(
    name="ack",
    summary="acknowledge blockers for one target minor until a time (or --revoke)",
    description="Acknowledge upgrade-readiness's blockers for one target minor until a time: one key "
    "ack-<minor>-<check> per check (default: every check) in the release's acknowledgements ConfigMap, its "
    "value {\"until\": ..., \"reason\": ...}, exactly what the controller reads. The check keeps showing its "
    "findings but stops blocking that minor (and only that minor) until the time passes; the controller then "
    "blocks again by itself. --revoke removes the keys. Other keys are left as they are. Who may acknowledge "
    "is whoever may patch that ConfigMap (the chart's acknowledgers Role). Exit 0 once written.",
    run=run,
    namespace="namespace of the chart's release (default: the one release found, in any namespace)",
    options=(
        command.option("--target", required=True, metavar="MINOR", help="the target minor, e.g. v1.38"),
        command.option(
            "--until", metavar="RFC3339",
            help="when the acknowledgement expires, with a time zone (e.g. 2026-12-01T00:00:00Z); required",
        ),
        command.option(
            "--checks", type=_checks, default=[], metavar="A,B",
            help=f"the checks to acknowledge (default: all: {', '.join(checks.TABLE.names)})",
        ),
        command.option("--reason", metavar="TEXT", help="why (a change ticket): shown with the verdict"),
        command.option(
            "--revoke", action="store_true", help="remove the acknowledgements of --checks for --target instead"
        ),
        command.option(
            "--release", metavar="NAME",
            help="the chart's release: its Helm release name, or its objects' prefix (default: the one found)",
        ),
        command.option(
            "--acknowledgements-config-map", metavar="NAME",
            help="the acknowledgements ConfigMap, in the release's namespace (default: the release's)",
        ),
    ),
)  # fmt: skip
