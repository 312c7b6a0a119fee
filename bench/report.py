"""Write bench/README.md: one table of every benchmark figure next to its anchor and goal, from results/*.json.

python -m bench.report        (the last step of make bench)
"""

from __future__ import annotations

import json
import pathlib
import statistics
import sys
from typing import Any

import yaml

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"

Row = tuple[str, str, str, str, str]  # figure, value, anchor (same run), ratio, goal (met?)


def save(result: Any, *, path: pathlib.Path) -> None:
    """Write one benchmark's result where the report reads it (every benchmark ends with this)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def uso_rows(data: dict[str, Any]) -> list[Row]:
    rates, ratios, goals = data["objectsPerSecond"], data["usoRunnerRatioTo"], data["goals"]
    n = data["objects"]
    rows: list[Row] = []
    for anchor, label in (
        ("ceiling", "bare concurrent PUT loop"),
        ("migrator", "kube-storage-version-migrator"),
        ("intree", "kube-controller-manager's in-tree migrator"),
        ("script", "update-storage-objects.sh method"),
    ):
        if anchor not in rates:
            continue
        goal = goals.get(anchor)
        rows.append((
            f"uso-runner, {n:,} ConfigMaps", f"{rates['uso-runner']} obj/s", f"{label}: {rates[anchor]} obj/s",
            f"{ratios[anchor]}x", f"≥ {goal}x ({_met(ratios[anchor] >= goal)})" if goal else "—",
        ))  # fmt: skip
    rss = data.get("rssRun") or {}
    if rss.get("peakRssMiB") is not None:
        rows.append((
            f"uso-runner peak RSS, {rss['objects']:,} objects", f"{rss['peakRssMiB']} MiB", "", "",
            f"≤ {goals['peakRssMiBAt100k']} MiB ({_met(rss['peakRssMiB'] <= goals['peakRssMiBAt100k'])})",
        ))  # fmt: skip
    return rows


def chart_default_shares() -> int:
    """The chart's usoRunner.flowControl.nominalConcurrencyShares now (a run's phase at that size is marked)."""
    values = yaml.safe_load((HERE.parent / "charts" / "kube-upgrade-controllers" / "values.yaml").read_text())
    return int(values["usoRunner"]["flowControl"]["nominalConcurrencyShares"])


def apf_rows(data: dict[str, Any]) -> list[Row]:
    goals, idle = data["goals"], data["idle"]["latency"]
    default = chart_default_shares()
    ceiling = data["ceilingObjectsPerSecond"]
    where = ", kube-apiserver and etcd on a core of their own" if data.get("pinned") else ""
    rows: list[Row] = [(
        f"other client ({data['otherClient']['ratePerSecond']:g} req/s) idle{where}, p50 / p99",
        f"{idle.get('p50Ms')} / {idle.get('p99Ms')} ms", "", "", "—",
    )]  # fmt: skip
    for phase in data["phases"]:
        label = (
            f"with the FlowSchema at {phase['shares']} share{'s' if phase['shares'] != 1 else ''} ({phase['seats']} seats"
            + (", the chart's default)" if phase["shares"] == default else ")")
            if phase["flowSchema"]
            else "without the FlowSchema"
        )
        during, ratio, share = phase["latency"], phase["p99RatioToIdle"], phase["ratioToCeiling"]
        rows.append((
            f"other client during a {data['objects']:,}-object migration {label}{where}, p50 / p99",
            f"{during.get('p50Ms')} / {during.get('p99Ms')} ms", f"idle p99: {idle.get('p99Ms')} ms",
            f"{ratio}x", f"≤ {goals['p99RatioToIdle']}x ({_met(ratio is not None and ratio <= goals['p99RatioToIdle'])})",
        ))  # fmt: skip
        rows.append((
            f"uso-runner's migration meanwhile, {label}{where}", f"{phase['objectsPerSecond']} obj/s",
            f"bare PUT ceiling: {ceiling} obj/s", f"{share}x",
            f"≥ {goals['migrationRatioToCeiling']}x ({_met(share is not None and share >= goals['migrationRatioToCeiling'])})",
        ))  # fmt: skip
    return rows


def tainter_rows(data: dict[str, Any]) -> list[Row]:
    seconds, speedup = data["seconds"], data["speedup"]
    n = data["nodes"]
    anchor = f"kubectl taint loop: {seconds['kubectlTaintLoop']} s"
    return [
        (f"node-tainter daemon, {n:,} outdated nodes", f"{seconds['nodeTainterDaemon']} s", anchor,
         f"{speedup['daemonVsKubectlLoop']}x", f"≥ 20x ({_met(speedup['daemonVsKubectlLoop'] >= 20)})"),
        (f"node-tainter --once (process start included), {n:,} nodes", f"{seconds['nodeTainterOnce']} s", anchor,
         f"{speedup['onceVsKubectlLoop']}x", "—"),
    ]  # fmt: skip


def agreement_rows(data: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for row in data["rows"]:
        anchor = f"{row['anchor']}: {row['anchor_value']} s" if row.get("anchor") else ""
        ratio = f"{row['ratio']}x" if row.get("ratio") else ""
        rows.append(
            (
                row["subject"],
                f"{row['value']} {row['unit']}",
                anchor,
                ratio,
                f"{row['goal']} ({_met(row['met'])})",
            )
        )
    return rows


def image_rows(data: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [(f"image {data['image']} size", f"{data['imageSizeMiB']} MiB", data["base"], "", "—")]
    for controller, measured in data["idle"].items():
        container, host = measured["container"], measured["virtualenv"]
        rows.append((
            f"{controller} idle RSS in the container (cgroup {container['cgroupMiB']} MiB)",
            f"{container['vmRssMiB']} MiB", f"from the virtualenv: {host['vmRssMiB']} MiB",
            f"{container['vmRssMiB'] / host['vmRssMiB']:.2f}x", "—",
        ))  # fmt: skip
    return rows


def combined_rows(data: dict[str, Any]) -> list[Row]:
    one, goal = data["combinedMiB"]["rss"], data["goalCombinedRssMiB"]
    count, separate = data["controllers"], data["separateProcessesTotalRssMiB"]
    imports = data["importAndConnectRssMiB"]
    lazy, eager = imports["without (the client as it is)"], imports["with the generated models"]
    return [
        (f"the {count} controllers in one process, idle RSS", f"{one} MiB", f"{count} processes: {separate} MiB",
         f"{round(separate / one, 2)}x less", f"≤ {goal:g} MiB ({_met(one <= goal)})"),
        (f"the {count} controllers imported, one client connected", f"{lazy} MiB",
         f"with kubernetes_asyncio's generated models loaded: {eager} MiB", f"{round(eager - lazy, 1)} MiB less", "—"),
    ]  # fmt: skip


def pace_table(data: dict[str, Any]) -> str:
    """The Pareto run (bench.pace) as a Markdown table, with its idle figures and the goal's verdict."""
    summary = data["summary"]
    idle = summary["idle"]
    lines = [
        f"{data['objects']:,} Widgets rewritten by each method (real rewrites: storage version switched before each "
        f"run), {data['repeats']} runs per point, the other client at {data['otherClient']['ratePerSecond']:g} "
        f"requests/s; idle (all idle windows pooled): p50 {idle.get('p50Ms')} ms, p99 {idle.get('p99Ms')} ms "
        f"({idle.get('requests')} requests).",
        "",
        "| method | objects/s (median; range) | other client p50 / p99 (runs pooled) | p99 / idle p99 (pooled; "
        "each run) | apiserver + etcd cores | 1-min load (before → after, each run) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, point in summary["points"].items():
        runs = [r for r in data["runs"] if r["point"] == name]
        rate_range = point["objectsPerSecondRange"] or ["—", "—"]
        cores = statistics.median(r["cpu"]["apiserverEtcdCores"] for r in runs)
        loads = ", ".join(f"{r['load1'][0]:.1f} → {r['load1'][1]:.1f}" for r in runs)
        rewritten = "" if point["allRewritten"] else " (**not every object rewritten**)"
        lines.append(
            f"| {point['label']}{rewritten} | {point['objectsPerSecond']} ({rate_range[0]}-{rate_range[1]}) | "
            f"{point['latency'].get('p50Ms')} / {point['latency'].get('p99Ms')} ms | "
            f"**{point['p99RatioToIdle']}x** ({', '.join(f'{r:g}' for r in point['p99RatioPerRun'])}) | "
            f"{cores:.2f} | {loads} |"
        )
    goal = summary["goal"]
    lines.append("")
    if goal.get("met") is None and f"paced-{data['defaultBudget']:g}" not in summary["points"]:
        lines.append("(No goal: the default budget is not one of these points.)")
    elif goal.get("met") is None:
        lines.append(f"Goal: not decided ({goal.get('why') or 'a point is missing'}).")
    else:
        checks = goal["checks"]
        parts = [
            f"p99 {checks['p99RatioToIdle']['value']}x idle (≤ 1.5x: {_met(checks['p99RatioToIdle']['met'])})"
        ]
        for anchor, label in (("intree", "the in-tree migrator"), ("ksvm", "kube-storage-version-migrator")):
            check = checks[anchor]
            if check.get("speedup") is not None:
                parts.append(
                    f"{check['speedup']}x as fast as {label} at p99 {check['p99Ratio'][0]}x vs its "
                    f"{check['p99Ratio'][1]}x ({_met(check['met'])})"
                )
        lines.append(f"Goal (default budget {data['defaultBudget']:g}): " + "; ".join(parts) + ".")
    return "\n".join(lines)


def render() -> str:
    sections: list[tuple[str, list[Row], str]] = []
    for name, to_rows in (
        ("uso", uso_rows),
        ("apf", apf_rows),
        ("apf-pinned", apf_rows),
        ("tainter", tainter_rows),
        ("agreement", agreement_rows),
        ("image", image_rows),
        ("combined", combined_rows),
    ):
        data = _load(name)
        if data is None:
            continue
        when = data.get("when") or data.get("date") or ""
        load = (data.get("machine") or {}).get("load1") or data.get("loadAverage1m") or data.get("load1")
        context = f"{name}.json, {when}" + (
            f", 1-min load {load:.1f} on {data.get('cpus') or (data.get('machine') or {}).get('cpus') or 2} cores"
            if load
            else ""
        )
        sections.append((name, to_rows(data), context))
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench.report`) from `bench/results/*.json`. Every anchor was measured",
        "in the same run as the figure next to it, on the same real local control plane (etcd + kube-apiserver on",
        "loopback). These machines have 2 cores shared by the apiserver, etcd and the client, so the apiserver is",
        "often the bottleneck: ratios against other clients of the same apiserver are bounded by it.",
        "",
        "| figure | value | anchor (same run) | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for _, rows, _ in sections:
        lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += ["", "Runs: " + "; ".join(context for _, _, context in sections) + "."]
    for name, heading, picture in (
        ("pace", "## How fast, at what cost to other clients (`make bench-pace`)", "each method"),
        (
            "pace-rates",
            "### The rate sweep: the other client's p99 against the write rate alone",
            "each rate",
        ),
    ):
        pace = _load(name)
        if pace is None:
            continue
        machine = pace["machine"]
        lines += [
            "",
            heading,
            "",
            f"{name}.json, {pace['when']}, kube-apiserver {pace['kubeVersion']}, {machine['cpus']} cores"
            + (
                " (kube-apiserver and etcd pinned to one core, the clients to the other)"
                if pace.get("pinned")
                else ""
            )
            + f"; `uptime` before: `{machine['uptimeBefore']}`, after: `{machine['uptimeAfter']}`.",
            "",
            pace_table(pace),
            "",
            f"![migration rate against the other client's p99 / idle p99, {picture}]({name}.png)",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    text = render()
    (HERE / "README.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
