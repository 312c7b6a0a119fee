"""Benchmark: the image's size and each controller's idle memory in a container, next to the same controller
run from the virtualenv on the host, in the same run.

On a fresh local control plane with no masters (so every controller waits for an agreement and does nothing),
each controller is started twice: from the image (``make image``) as the chart runs it (read-only root, uid
65532, a tmpfs on /tmp; host network to reach the fixture) and from the virtualenv as a host process. Once its
``/readyz`` answers 200 it is left idle for ``--idle-seconds``, then its main process's resident set (VmRSS)
is read from /proc, and for the container also the cgroup's memory usage as ``docker stats`` shows it.
Prints a table; writes ``bench/results/image.json``.

    python -m bench.image [--idle-seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

from e2e import containers, controlplane

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "image.json"
CONTROLLERS = ("addon-updater", "uso-runner", "node-tainter", "leader-watchdog")
BUNDLES = controlplane.REPO / "examples" / "bundles"
BUNDLES_IN_CONTAINER = "/bundles"
BASE = "python:3.11-slim-bookworm"


def controller_flags(controller: str, *, metrics_port: int, health_port: int, bundle_dir: str) -> list[str]:
    flags = [
        f"--metrics-bind-address=127.0.0.1:{metrics_port}",
        f"--health-probe-bind-address=127.0.0.1:{health_port}",
        "--namespace=default",
        f"--release=bench-{uuid.uuid4().hex[:6]}",
    ]
    if controller == "addon-updater":
        flags.append(f"--bundle-dir={bundle_dir}")
    return flags


def wait_ready(port: int, *, timeout: float = 60.0) -> float:
    """Seconds until ``/readyz`` answers 200."""
    started = time.monotonic()
    while True:
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response,
        ):
            if response.status == 200:
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"/readyz on port {port} not ready after {timeout} s")
        time.sleep(0.2)


def vm_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextlib.contextmanager
def in_container(run: containers.Run, controller: str, *, idle: float) -> Iterator[dict[str, float]]:
    metrics_port, health_port = controlplane.free_port(), controlplane.free_port()
    flags = controller_flags(
        controller, metrics_port=metrics_port, health_port=health_port, bundle_dir=BUNDLES_IN_CONTAINER
    )
    name = f"kuc-bench-{controller}-{uuid.uuid4().hex[:6]}"
    argv = run.argv(
        controller, "--kubeconfig", containers.KUBECONFIG_IN_CONTAINER, *flags, name=name, detach=True
    )
    argv[argv.index(run.image) : argv.index(run.image)] = ["--volume", f"{BUNDLES}:{BUNDLES_IN_CONTAINER}:ro"]
    subprocess.run(argv, capture_output=True, check=True)
    try:
        ready = wait_ready(health_port)
        time.sleep(idle)
        pid = int(
            subprocess.run(
                ["docker", "inspect", "--format", "{{.State.Pid}}", name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        yield {
            "readySeconds": round(ready, 2),
            "vmRssMiB": vm_rss_mib(pid),
            "cgroupMiB": round(containers.memory_mib(name)[0], 1),
        }
    finally:
        containers.remove(name)


@contextlib.contextmanager
def from_virtualenv(kubeconfig: pathlib.Path, controller: str, *, idle: float) -> Iterator[dict[str, float]]:
    metrics_port, health_port = controlplane.free_port(), controlplane.free_port()
    flags = controller_flags(
        controller, metrics_port=metrics_port, health_port=health_port, bundle_dir=str(BUNDLES)
    )
    module = f"controllers.{controller.replace('-', '_')}"
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--kubeconfig", str(kubeconfig), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = wait_ready(health_port)
        time.sleep(idle)
        yield {"readySeconds": round(ready, 2), "vmRssMiB": vm_rss_mib(process.pid)}
    finally:
        process.terminate()
        process.wait(timeout=30)


def image_size_mib(image: str) -> float:
    return round(int(containers.inspect(image, "{{.Size}}")) / 1024 / 1024, 1)


def base_image_description() -> str:
    """Which base the image was built on: upstream's or the local stand-in (its label says so)."""
    label = '{{index .Config.Labels "org.opencontainers.image.description"}}'
    return containers.inspect(BASE, label) or BASE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=10.0,
        help="how long each controller idles before it is measured",
    )
    args = parser.parse_args(argv)
    containers.require_image()

    rows: dict[str, dict[str, dict[str, float]]] = {}
    with controlplane.running() as plane, tempfile.TemporaryDirectory() as scratch:
        run = containers.Run(
            kubeconfig=containers.write_inline_kubeconfig(plane, pathlib.Path(scratch) / "kubeconfig")
        )
        for controller in CONTROLLERS:
            with in_container(run, controller, idle=args.idle_seconds) as container:
                pass
            with from_virtualenv(plane.kubeconfig, controller, idle=args.idle_seconds) as host:
                pass
            rows[controller] = {"container": container, "virtualenv": host}
            print(
                f"{controller:16} container: VmRSS {container['vmRssMiB']:6.1f} MiB, cgroup {container['cgroupMiB']:6.1f} MiB, "
                f"ready in {container['readySeconds']:4.1f} s | virtualenv: VmRSS {host['vmRssMiB']:6.1f} MiB, "
                f"ready in {host['readySeconds']:4.1f} s",
                flush=True,
            )

    size = image_size_mib(containers.IMAGE)
    print(f"image {containers.IMAGE}: {size} MiB (base: {base_image_description()})")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "load1": os.getloadavg()[0],
                    "python": platform.python_version(),
                },
                "image": containers.IMAGE,
                "imageSizeMiB": size,
                "base": base_image_description(),
                "idleSeconds": args.idle_seconds,
                "idle": rows,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
