"""``make demo``: a simulated control-plane upgrade on a real local control plane, all five controllers reacting.

1. A real etcd + kube-apiserver (built once from the Go module proxy, cached).
2. 3 masters + 20 workers at v1.35 as Node objects, kept alive by this script (node heartbeat Leases, the
   controller-manager and scheduler leader Leases, the ``default/kubernetes`` endpoints).
3. The five controllers (the registry's) as real processes with their own flags.
4. A rolling master upgrade to v1.36 (add a new master, remove an old one, three times), with a CRD whose
   storage version moves from v1 to v2; then the workers are replaced one by one; then a stale leader.
5. A timeline as things happen, a summary table, the metrics URLs (served as they ship: HTTPS, to a bearer
   token RBAC lets get /metrics; the demo reads them with one). Nothing is left running.

    python -m e2e.demo            (what make demo runs)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator

from controllers import registry
from controllers.kube import client, resources, retry
from controllers.structs import times
from e2e import cluster as accounts
from e2e import controlplane

REPO = pathlib.Path(__file__).resolve().parent.parent
OLD, NEW = "v1.35.4", "v1.36.1"
WORKERS = 20
SETTLE = 3
WIDGETS = 300
TAINT_KEY = "upgrade.kube-upgrade-controllers.io/outdated"  # node-tainter's default key
LEASES = resources.LEASES
WIDGET_GROUP = "demo.kube-upgrade-controllers.io"
WIDGETS_RESOURCE = resources.Resource(WIDGET_GROUP, "v2", "widgets", namespaced=True)
LEASE_SECONDS = 10


# --- the timeline --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Step:
    key: str
    text: str
    at: float


@dataclasses.dataclass
class Timeline:
    """Steps as they are observed, printed with the seconds since the start."""

    started: float = dataclasses.field(default_factory=time.monotonic)
    steps: list[Step] = dataclasses.field(default_factory=list)
    quiet: bool = False

    def say(self, key: str, text: str) -> None:
        step = Step(key=key, text=text, at=time.monotonic() - self.started)
        self.steps.append(step)
        if not self.quiet:
            print(f"[{step.at:6.1f}s] {text}", flush=True)

    def has(self, key: str) -> bool:
        return any(step.key == key for step in self.steps)

    def first(self, key: str) -> Step | None:
        return next((step for step in self.steps if step.key == key), None)

    async def wait(
        self,
        key: str,
        check: Callable[[], Awaitable[str | None]],
        *,
        within: float = 90,
        detail: Callable[[], str] = lambda: "",
    ) -> None:
        """Poll ``check`` until it returns a description; record it as step ``key``. On a timeout the error
        says what ``detail`` shows then (what the step was still waiting for)."""
        deadline = time.monotonic() + within
        while True:
            text = await check()
            if text:
                self.say(key, text)
                return
            if time.monotonic() > deadline:
                shown = detail()
                raise TimeoutError(
                    f"demo step {key!r} did not happen within {within:.0f} s"
                    + (f": {shown}" if shown else "")
                )
            await asyncio.sleep(0.25)


# --- the simulated cluster -----------------------------------------------------------------------------------


def node_body(name: str, *, master: bool, address: str) -> client.JSON:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if master:
        labels["node-role.kubernetes.io/control-plane"] = ""
    return {"metadata": {"name": name, "labels": labels}}


def node_status(*, version: str, address: str) -> client.JSON:
    stamp = times.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "status": {
            "nodeInfo": {"kubeletVersion": version},
            "addresses": [{"type": "InternalIP", "address": address}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ],
        }
    }


@dataclasses.dataclass
class Cluster:
    """The nodes and leases this script keeps alive, as a kubelet and the leaders would."""

    kube: client.Kube
    masters: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> address
    workers: dict[str, str] = dataclasses.field(default_factory=dict)
    heartbeats: set[str] = dataclasses.field(default_factory=set)
    leaders: dict[str, str] = dataclasses.field(default_factory=dict)  # lease name -> holder master
    stalled_leaders: set[str] = dataclasses.field(default_factory=set)
    next_address: int = 10

    def address(self) -> str:
        self.next_address += 1
        return f"10.96.0.{self.next_address}"

    async def add_node(self, name: str, *, version: str, master: bool) -> None:
        address = self.address()
        await self.kube.create(resources.NODES.path(), node_body(name, master=master, address=address))
        await self.kube.patch(
            resources.NODES.path(name=name, subresource="status"),
            node_status(version=version, address=address),
        )
        (self.masters if master else self.workers)[name] = address
        self.heartbeats.add(name)
        await self.renew_heartbeat(name)

    async def remove_node(self, name: str) -> None:
        self.heartbeats.discard(name)
        self.masters.pop(name, None)
        self.workers.pop(name, None)
        await self.kube.delete(resources.NODES.path(name=name))
        with contextlib.suppress(client.ApiError):
            await self.kube.delete(LEASES.path(namespace="kube-node-lease", name=name))

    async def renew_heartbeat(self, name: str) -> None:
        await self._renew(namespace="kube-node-lease", name=name, holder=name, duration=40)

    async def _renew(self, *, namespace: str, name: str, holder: str, duration: int) -> None:
        path = LEASES.path(namespace=namespace, name=name)
        spec = {"holderIdentity": holder, "leaseDurationSeconds": duration, "renewTime": times.micro_time()}
        try:
            await self.kube.patch(path, {"spec": spec})
        except client.ApiError as error:
            if not error.not_found:
                raise
            await self.kube.create(
                LEASES.path(namespace=namespace), {"metadata": {"name": name}, "spec": spec}
            )

    async def publish_endpoints(self) -> None:
        """The ``default/kubernetes`` Service's EndpointSlice lists the masters' apiservers (the fixture's own
        endpoint reconciler is off)."""
        body: client.JSON = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip]} for ip in sorted(self.masters.values())],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
        }
        path = resources.ENDPOINT_SLICES.path(namespace="default", name="kubernetes")
        try:
            current = await self.kube.get(path)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await self.kube.replace(path, body)
        except client.ApiError as error:
            if not error.not_found:
                raise
            await self.kube.create(resources.ENDPOINT_SLICES.path(namespace="default"), body)

    async def keep_alive(self) -> None:
        """Every 2 s: renew every leader Lease that is not stalled on purpose, and every node heartbeat."""
        while True:
            renewals = [
                self._renew(
                    namespace="kube-system",
                    name=lease,
                    holder=holder_identity(master),
                    duration=LEASE_SECONDS,
                )
                for lease, master in self.leaders.items()
                if lease not in self.stalled_leaders
            ]
            renewals += [self.renew_heartbeat(name) for name in self.heartbeats]
            for result in await asyncio.gather(*renewals, return_exceptions=True):
                # An API or connection failure of one renewal (a busy apiserver) is made up 2 s later, as a
                # kubelet does; anything else is a bug of this script and ends the demo.
                if isinstance(result, BaseException) and retry.classify(result) is None:
                    raise result
            await asyncio.sleep(2)


def holder_identity(master: str) -> str:
    """``<hostname>_<uuid>``, as the controller-manager and scheduler write it."""
    return f"{master}_{uuid.uuid5(uuid.NAMESPACE_DNS, master)}"


async def create_widgets(kube: client.Kube, *, namespace: str) -> None:
    """A CRD served at v1 (storage) and v2, and WIDGETS objects stored at v1."""
    schema = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{WIDGET_GROUP}"},
        "spec": {
            "group": WIDGET_GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": schema},
                {"name": "v2", "served": True, "storage": False, "schema": schema},
            ],
        },
    }
    await kube.create(resources.CRDS.path(), crd)
    crd_path = resources.CRDS.path(name=f"widgets.{WIDGET_GROUP}")
    for _ in range(100):
        conditions = (await kube.get(crd_path)).get("status", {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            break
        await asyncio.sleep(0.1)
    v1 = resources.Resource(WIDGET_GROUP, "v1", "widgets", namespaced=True)
    semaphore = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with semaphore:
            await kube.create(
                v1.path(namespace=namespace),
                {
                    "apiVersion": f"{WIDGET_GROUP}/v1",
                    "kind": "Widget",
                    "metadata": {"name": f"widget-{i:03d}"},
                    "spec": {"size": i},
                },
            )

    await asyncio.gather(*(one(i) for i in range(WIDGETS)))


async def switch_widget_storage_to_v2(kube: client.Kube) -> None:
    path = resources.CRDS.path(name=f"widgets.{WIDGET_GROUP}")
    crd = await kube.get(path)
    for version in crd["spec"]["versions"]:
        version["storage"] = version["name"] == "v2"
    await kube.replace(path, crd)


# --- the controllers -----------------------------------------------------------------------------------------


# Who reads the controllers' metrics here: they serve them as they ship, over HTTPS to a bearer token RBAC
# lets get /metrics (a self-signed certificate made at start: not verified, as the chart's ServiceMonitor).
READER = "demo-metrics-reader"
UNVERIFIED = ssl.create_default_context()
UNVERIFIED.check_hostname = False
UNVERIFIED.verify_mode = ssl.CERT_NONE


async def metrics_reader_token(kube: client.Kube) -> str:
    """The ServiceAccount kube-system/demo-metrics-reader, allowed to get /metrics and /status; its token."""
    await kube.create(accounts.SERVICEACCOUNTS.path(namespace="kube-system"), {"metadata": {"name": READER}})
    await accounts.grant_metrics_reader(kube, namespace="kube-system", account=READER)
    return await accounts.service_account_token(kube, namespace="kube-system", name=READER, seconds=3600)


@dataclasses.dataclass
class Process:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: pathlib.Path
    token: str  # of the metrics reader

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def get(self, path: str) -> str:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=2, context=UNVERIFIED) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    def metric(self, name: str, labels: str = "") -> float:
        """Sum of the samples of ``name`` whose label text contains ``labels``."""
        total = 0.0
        for line in self.get("/metrics").splitlines():
            match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
            if match and labels in (match.group(1) or ""):
                total += float(match.group(2))
        return total


def controller_flags(name: str, *, plane: controlplane.ControlPlane, widgets_namespace: str) -> list[str]:
    common = [
        f"--kubeconfig={plane.kubeconfig}", "--namespace=kube-system", f"--settle-seconds={SETTLE}",
        "--min-masters=3", "--log-format=json",
    ]  # fmt: skip
    return common + [flag.format(repo=REPO) for flag in registry.find(name).demo_flags]


@contextlib.contextmanager
def controllers(
    plane: controlplane.ControlPlane, *, widgets_namespace: str, logs: pathlib.Path, token: str
) -> Iterator[dict[str, Process]]:
    bin_dir = pathlib.Path(sys.executable).parent
    started: dict[str, Process] = {}
    try:
        for name in registry.EVERY_CLUSTER:
            port = controlplane.free_port()
            log = logs / f"{name}.log"
            argv = [
                str(bin_dir / name),
                *controller_flags(name, plane=plane, widgets_namespace=widgets_namespace),
            ]
            argv += [
                f"--metrics-bind-address=127.0.0.1:{port}",
                f"--health-probe-bind-address=127.0.0.1:{port}",
            ]
            with log.open("wb") as out:
                popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            started[name] = Process(name=name, port=port, popen=popen, log=log, token=token)
        yield started
    finally:
        for process in started.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGTERM)
        for process in started.values():
            try:
                process.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait()


# --- the scenario --------------------------------------------------------------------------------------------


async def state(kube: client.Kube, controller: str) -> dict[str, str]:
    try:
        cm = await kube.get(
            resources.CONFIGMAPS.path(
                namespace="kube-system", name=f"kube-upgrade-controllers-{controller}-state"
            )
        )
    except client.ApiError:
        return {}
    return dict(cm.get("data") or {})


def widgets_stored_at(plane: controlplane.ControlPlane, version: str) -> int:
    """How many widgets etcd holds encoded at ``version`` (custom resources are stored as JSON)."""
    prefix = f"/registry/{WIDGET_GROUP}/widgets/"
    raw = json.loads(plane.etcdctl("get", prefix, "--prefix", "-w", "json"))
    marker = f'"apiVersion":"{WIDGET_GROUP}/{version}"'.encode()
    return sum(1 for kv in raw.get("kvs", []) if marker in base64.b64decode(kv["value"]))


async def tainted_workers(kube: client.Kube) -> list[str]:
    page = await kube.get(resources.NODES.path())
    return [
        node["metadata"]["name"]
        for node in page["items"]
        if any(t.get("key") == TAINT_KEY for t in node.get("spec", {}).get("taints") or [])
    ]


async def run_scenario(
    plane: controlplane.ControlPlane,
    timeline: Timeline,
    *,
    logs: pathlib.Path,
    started: Callable[[dict[str, Process]], None] | None = None,
) -> dict[str, Process]:
    """The whole story; returns the controller processes (already stopped) for the summary. ``started`` is
    told the processes as soon as they run (the README's dashboard picture has a Prometheus scrape them)."""
    async with await client.connect(kubeconfig=str(plane.kubeconfig)) as kube:
        cluster = Cluster(kube)
        await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": "demo"}})
        for name in ("master-a", "master-b", "master-c"):
            await cluster.add_node(name, version=OLD, master=True)
        for i in range(1, WORKERS + 1):
            await cluster.add_node(f"worker-{i:02d}", version=OLD, master=False)
        cluster.leaders = {"kube-controller-manager": "master-a", "kube-scheduler": "master-b"}
        await cluster.publish_endpoints()
        await create_widgets(kube, namespace="demo")
        timeline.say(
            "cluster",
            f"cluster ready: 3 masters + {WORKERS} workers at {OLD}, {WIDGETS} widgets stored at v1",
        )
        token = await metrics_reader_token(kube)
        with controllers(plane, widgets_namespace="demo", logs=logs, token=token) as procs:
            if started is not None:
                started(procs)
            # The nodes and leaders are kept alive beside the story; if that ever stops, the demo stops with
            # its error at once rather than at a later step that waits for healthy heartbeats.
            async with asyncio.TaskGroup() as group:
                keeper = group.create_task(cluster.keep_alive())
                await _story(kube, cluster, timeline, procs, plane)
                keeper.cancel()
        return procs


async def _story(
    kube: client.Kube,
    cluster: Cluster,
    timeline: Timeline,
    procs: dict[str, Process],
    plane: controlplane.ControlPlane,
) -> None:
    tainter, watchdog = procs["node-tainter"], procs["leader-watchdog"]

    async def agreed(version: str) -> str | None:
        if tainter.metric("node_tainter_agreed_version_info", f'version="{version}"') == 1:
            return f"masters agree on {version} (settled {SETTLE} s)"
        return None

    await timeline.wait("agree-old", lambda: agreed(OLD))

    addon, uso = procs["addon-updater"], procs["uso-runner"]

    async def addon_at(minor: str) -> str | None:
        data = await state(kube, "addon-updater")
        if data.get("phase") == "Done" and data.get("bundleMinor") == minor:
            applied = addon.metric("addon_updater_objects_applied_total")
            pruned = addon.metric("addon_updater_objects_pruned_total")
            return (
                f"addon bundle {minor} active, digest {data.get('bundleDigest', '')[:12]} "
                f"({applied:.0f} objects applied, {pruned:.0f} pruned so far)"
            )
        return None

    await timeline.wait("addon-old", lambda: addon_at("1.35"))

    async def disagreement() -> str | None:
        if tainter.metric("node_tainter_masters_agreed") == 0:
            return "masters disagree: a rolling upgrade is under way; every controller holds still"
        return None

    # The rolling master upgrade: one at a time, a new master joins, then an old one leaves.
    await switch_widget_storage_to_v2(kube)
    timeline.say("crd", "CRD widgets: storage version switched v1 -> v2 (objects still stored at v1)")
    for old, new in (("master-a", "master-d"), ("master-b", "master-e"), ("master-c", "master-f")):
        await cluster.add_node(new, version=NEW, master=True)
        for lease, holder in cluster.leaders.items():
            if holder == old:
                cluster.leaders[lease] = new
        await cluster.remove_node(old)
        await cluster.publish_endpoints()
        await asyncio.sleep(1)  # one master at a time
        if not timeline.has("disagree"):
            await timeline.wait("disagree", disagreement)
        timeline.say("master", f"master {old} ({OLD}) replaced by {new} ({NEW})")

    await timeline.wait("agree-new", lambda: agreed(NEW))
    await timeline.wait("addon-new", lambda: addon_at("1.36"))

    async def migrated() -> str | None:
        data = await state(kube, "uso-runner")
        if data.get("version") != NEW or data.get("phase") != "Succeeded":
            return None
        at_v2 = widgets_stored_at(plane, "v2")
        rewritten = uso.metric("uso_runner_objects_total", 'outcome="migrated"')
        return (
            f"storage migration done ({data.get('progress', '')}); {rewritten:.0f} objects rewritten "
            f"since start; etcd holds {at_v2}/{WIDGETS} widgets at v2"
        )

    await timeline.wait("migrated", migrated, within=120)

    async def all_tainted() -> str | None:
        tainted = await tainted_workers(kube)
        return f"{len(tainted)} workers tainted {TAINT_KEY} (no master)" if len(tainted) == WORKERS else None

    await timeline.wait("tainted", all_tainted)

    for i in range(1, WORKERS + 1):
        await cluster.add_node(f"worker-{i:02d}-new", version=NEW, master=False)
        await cluster.remove_node(f"worker-{i:02d}")
    timeline.say("replaced", f"{WORKERS} workers replaced one by one by {NEW} nodes")

    async def none_tainted() -> str | None:
        return "no node carries the taint any more" if not await tainted_workers(kube) else None

    await timeline.wait("untainted", none_tainted)

    last: dict[str, object] = {}

    async def healthy() -> str | None:
        status = json.loads(watchdog.get("/status") or "{}")
        last["findings"] = findings = status.get("findings", [])
        return "watchdog: leaders, endpoints and heartbeats healthy" if status and not findings else None

    await timeline.wait(
        "healthy", healthy, detail=lambda: f"the watchdog still reports {last.get('findings')}"
    )

    cluster.stalled_leaders.add("kube-scheduler")
    timeline.say("inject", f"injected: kube-scheduler's leader stops renewing its Lease ({LEASE_SECONDS} s)")

    async def stale() -> str | None:
        status = json.loads(watchdog.get("/status") or "{}")
        for finding in status.get("findings", []):
            if "stale" in str(finding.get("check", "")) and "kube-scheduler" in json.dumps(finding):
                return f"watchdog caught it: {finding.get('check')} — {finding.get('evidence', '')}"
        return None

    await timeline.wait("stale-leader", stale, within=LEASE_SECONDS + 20)


async def main() -> int:
    print("kube-upgrade-controllers demo: building or reusing the local control plane…", flush=True)
    logs = pathlib.Path(os.environ.get("DEMO_LOGS", "")) if os.environ.get("DEMO_LOGS") else None
    with controlplane.running() as plane:
        logs = logs or plane.root
        timeline = Timeline()
        procs = await run_scenario(plane, timeline, logs=logs)
    print_summary(timeline, procs)
    return 0


def print_summary(timeline: Timeline, procs: dict[str, Process]) -> None:
    print("\nSummary")
    print(f"{'step':<14} {'at':>7}  what")
    for step in timeline.steps:
        print(f"{step.key:<14} {step.at:6.1f}s  {step.text}")
    print(
        "\nMetrics were served at (now stopped; HTTPS with a self-signed certificate, to a bearer token allowed"
    )
    print(f"to get /metrics: here the ServiceAccount kube-system/{READER}'s):")
    for process in procs.values():
        print(f"  {process.name:<16} {process.url}/metrics")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
