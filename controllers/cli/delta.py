"""``delta FROM TO``: what upgrading from one minor to another removes or changes, from the release delta
shipped with the package (derived from each release's source: docs/release-delta.md). No cluster is read."""

from __future__ import annotations

import argparse

from controllers.cli import command, output
from controllers.release_delta import catalog, model
from controllers.runtime import exits

ALL = "all five"  # the brief table's word for every component


def _components(components: tuple[str, ...], *, brief: bool) -> str:
    if brief and set(components) == set(model.COMPONENTS):
        return ALL
    return ", ".join(components)


def _bool(value: bool) -> str:
    return str(value).lower()


def delta_view(delta: model.Delta, *, brief: bool) -> output.View:
    prerelease = f" ({delta.target.version} is a prerelease)" if delta.prerelease else ""
    lines = [
        f"{delta.source.version} → {delta.target.version}{prerelease}: {len(delta.gates_removed)} feature "
        f"gate(s) removed, {len(delta.gates_locked)} locked, {len(delta.flags_removed)} flag(s) removed, "
        f"{len(delta.apis_removed)} API(s) removed, {len(delta.metrics_removed)} metric(s) no longer exported",
        f"kubeadm {delta.target.minor} reads "
        + ", ".join(f"{a.version} ({a.status})" for a in delta.kubeadm_apis)
        + (f"; no longer {', '.join(delta.kubeadm_apis_removed)}" if delta.kubeadm_apis_removed else ""),
    ]
    gates = tuple(
        (g.name, "removed", _components(g.components, brief=brief),
         f"was {_bool(g.default)}" + (", locked" if g.locked else ""))
        for g in delta.gates_removed
    ) + tuple(
        (g.name, "locked", _components(g.components, brief=brief), f"only {_bool(g.default)}")
        for g in delta.gates_locked
    ) + tuple(
        (name, "removed", "kubeadm", "") for name in delta.kubeadm_gates_removed
    ) + tuple(
        (g.name, "locked", "kubeadm", f"only {_bool(g.default)}") for g in delta.kubeadm_gates_locked
    )  # fmt: skip
    flags = tuple((f.component, f"--{f.name}", "removed", "") for f in delta.flags_removed) + tuple(
        (f.component, f"--{f.name}", "deprecated", f.message) for f in delta.flags_deprecated
    )
    apis = tuple((a.group_version, a.kind, a.removed, a.replacement) for a in delta.apis_removed)
    metrics = tuple(
        (m.name, m.change, _components(m.components, brief=brief), m.replacement)
        for m in delta.metrics_removed
    )
    versions = tuple((v.name, v.before, v.after) for v in delta.versions)
    tables = (
        output.Table(("FEATURE GATE", "CHANGE", "COMPONENTS", "VALUE"), gates),
        output.Table(("COMPONENT", "FLAG", "CHANGE", "NOTE"), flags),
        output.Table(("API", "KIND", "REMOVED IN", "REPLACEMENT"), apis),
        output.Table(("METRIC", "CHANGE", "COMPONENTS", "REPLACEMENT"), metrics),
        output.Table(("KUBEADM INSTALLS", "BEFORE", "AFTER"), versions),
    )
    return output.View(lines=tuple(lines), tables=tuple(t for t in tables if t.rows))


async def run(args: argparse.Namespace, cluster: command.Cluster) -> output.Outcome:
    try:
        found = catalog.delta(args.source, args.target)
    except model.DeltaError as error:
        raise command.UsageError(str(error)) from error
    return output.Outcome(
        code=exits.OK,
        document=model.to_document(found),
        brief=delta_view(found, brief=True),
        full=delta_view(found, brief=False),
    )


COMMAND = command.Command(
    name="delta",
    summary="what upgrading from one minor to another removes: feature gates, flags, APIs, metrics, kubeadm "
    "config versions (no cluster read)",
    description="Print the release delta from minor FROM to minor TO (1.36 1.37; several minors apart: the "
    "union of each pair): the feature gates the components no longer know or lock to their default, the "
    "flags they remove or deprecate, the API kinds no longer served, the metrics no longer exported (with "
    "their replacement where the source names one), the kubeadm config API versions kubeadm reads, and the "
    "etcd / CoreDNS / pause versions kubeadm installs. Derived from each release's source and shipped with "
    f"this version (minors {', '.join(catalog.minors())}; `make release-delta` regenerates). "
    "A prerelease target is marked. Exit 0, or 2 for minors without data.",
    run=run,
    options=(
        command.option("source", metavar="FROM", help="the minor upgraded from, e.g. 1.36"),
        command.option("target", metavar="TO", help="the minor upgraded to, e.g. 1.37"),
    ),
    outputs=output.WITH_WIDE,
    cluster=False,
)
