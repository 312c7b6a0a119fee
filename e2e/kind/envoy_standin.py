#!/usr/bin/python3
"""A stand-in for the envoy proxy that kind runs as the control-plane load balancer (our own code).

kind (v0.33) starts its load balancer container with ``envoy -c /home/envoy/envoy.yaml``: a bootstrap whose
listeners (LDS) and clusters (CDS) come from two files that kind rewrites (``mv`` of a new file) each time
the set of control-plane nodes changes. Upstream's envoy image cannot be pulled here, so the locally built
image under the name kind asks for runs this program as ``envoy`` instead. It reads the same three files
and does what kind's configuration asks of envoy, no more:

- listen on every listener's TCP address and port, and forward each connection to one of the cluster's
  endpoints (round robin over the healthy ones; the next one when a connection is refused or times out);
- health-check every endpoint like kind's configuration does: ``GET /healthz`` over TLS without verifying
  the certificate, every ``interval``; ``unhealthy_threshold`` failures make it unhealthy, one success
  healthy again; with no healthy endpoint every endpoint is tried (envoy's panic mode);
- pick up new files within half a second (envoy watches the paths; kind replaces them with ``mv``).

Only the parts of the envoy configuration that kind writes are read; anything else is ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import itertools
import os
import ssl
import sys
import time
from typing import Any

import yaml

POLL_SECONDS = 0.5
PIPE_CHUNK = 65536


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} envoy-standin: {message}", flush=True)


def _seconds(value: Any, default: float) -> float:
    """Envoy durations are strings like ``0.25s`` or ``3s``."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.endswith("s"):
        try:
            return float(value[:-1])
        except ValueError:
            return default
    return default


def _resources(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as error:
        log(f"cannot read {path}: {error}")
        return []
    if not isinstance(document, dict):
        return []
    resources = document.get("resources") or []
    return [r for r in resources if isinstance(r, dict)]


@dataclasses.dataclass(frozen=True)
class Listener:
    address: str
    port: int
    cluster: str


@dataclasses.dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclasses.dataclass(frozen=True)
class Cluster:
    name: str
    endpoints: tuple[Endpoint, ...]
    connect_timeout: float
    check_interval: float
    check_timeout: float
    unhealthy_threshold: int
    healthy_threshold: int
    check_path: str | None
    check_tls: bool


def parse_listeners(path: str) -> list[Listener]:
    listeners = []
    for resource in _resources(path):
        socket_address = (resource.get("address") or {}).get("socket_address") or {}
        cluster = ""
        for chain in resource.get("filter_chains") or []:
            for network_filter in chain.get("filters") or []:
                cluster = (network_filter.get("typed_config") or {}).get("cluster", cluster)
        if "port_value" in socket_address and cluster:
            listeners.append(
                Listener(
                    str(socket_address.get("address", "0.0.0.0")), int(socket_address["port_value"]), cluster
                )
            )
    return listeners


def parse_clusters(path: str) -> dict[str, Cluster]:
    clusters = {}
    for resource in _resources(path):
        endpoints = []
        for locality in (resource.get("load_assignment") or {}).get("endpoints") or []:
            for lb_endpoint in locality.get("lb_endpoints") or []:
                socket_address = ((lb_endpoint.get("endpoint") or {}).get("address") or {}).get(
                    "socket_address"
                ) or {}
                if "address" in socket_address and "port_value" in socket_address:
                    endpoints.append(
                        Endpoint(str(socket_address["address"]), int(socket_address["port_value"]))
                    )
        check = (resource.get("health_checks") or [{}])[0]
        http_check = check.get("http_health_check")
        name = str(resource.get("name", ""))
        clusters[name] = Cluster(
            name=name,
            endpoints=tuple(sorted(endpoints, key=lambda e: (e.host, e.port))),
            connect_timeout=_seconds(resource.get("connect_timeout"), 5.0),
            check_interval=_seconds(check.get("interval"), 2.0),
            check_timeout=_seconds(check.get("timeout"), 3.0),
            unhealthy_threshold=int(check.get("unhealthy_threshold", 2)),
            healthy_threshold=int(check.get("healthy_threshold", 1)),
            check_path=str(http_check.get("path", "/")) if isinstance(http_check, dict) else None,
            check_tls=bool(resource.get("transport_socket_matches") or resource.get("transport_socket")),
        )
    return clusters


class Balancer:
    """The live state: listeners serving, clusters with their endpoints' health, reloaded from the files."""

    def __init__(self) -> None:
        self.clusters: dict[str, Cluster] = {}
        self.healthy: dict[Endpoint, bool] = {}
        self.counts: dict[Endpoint, tuple[int, int]] = {}  # consecutive (failures, successes)
        self.servers: dict[Listener, asyncio.Server] = {}
        self.turn = itertools.count()
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE

    def candidates(self, cluster_name: str) -> list[Endpoint]:
        cluster = self.clusters.get(cluster_name)
        if cluster is None or not cluster.endpoints:
            return []
        endpoints = list(cluster.endpoints)
        start = next(self.turn) % len(endpoints)
        endpoints = endpoints[start:] + endpoints[:start]
        healthy = [e for e in endpoints if self.healthy.get(e, True)]
        unhealthy = [e for e in endpoints if not self.healthy.get(e, True)]
        # Healthy ones first; the others still get a try (envoy's panic mode when none is healthy).
        return healthy + unhealthy

    async def handle(
        self, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        cluster = self.clusters.get(listener.cluster)
        timeout = cluster.connect_timeout if cluster else 5.0
        for endpoint in self.candidates(listener.cluster):
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(endpoint.host, endpoint.port), timeout
                )
            except (OSError, TimeoutError) as error:
                log(
                    f"connect to {endpoint.host}:{endpoint.port} failed ({error or 'timeout'}), trying the next"
                )
                continue
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        log(f"no endpoint of {listener.cluster} accepted a connection")
        writer.close()

    async def check(self, cluster: Cluster, endpoint: Endpoint) -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    endpoint.host, endpoint.port, ssl=self.tls if cluster.check_tls else None
                ),
                cluster.check_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError):
            return False
        try:
            if cluster.check_path is None:
                return True
            request = (
                f"GET {cluster.check_path} HTTP/1.1\r\nHost: {endpoint.host}\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode())
            status = await asyncio.wait_for(reader.readline(), cluster.check_timeout)
            parts = status.split()
            return len(parts) >= 2 and parts[1] == b"200"
        except (OSError, TimeoutError, ssl.SSLError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def health_loop(self) -> None:
        while True:
            interval = 2.0
            for cluster in list(self.clusters.values()):
                interval = min(interval, cluster.check_interval)
                results = await asyncio.gather(*(self.check(cluster, e) for e in cluster.endpoints))
                for endpoint, ok in zip(cluster.endpoints, results, strict=True):
                    self.record(cluster, endpoint, ok)
            await asyncio.sleep(interval)

    def record(self, cluster: Cluster, endpoint: Endpoint, ok: bool) -> None:
        failures, successes = self.counts.get(endpoint, (0, 0))
        failures, successes = (0, successes + 1) if ok else (failures + 1, 0)
        self.counts[endpoint] = (failures, successes)
        was = self.healthy.get(endpoint)
        if ok and successes >= cluster.healthy_threshold:
            self.healthy[endpoint] = True
        elif not ok and (failures >= cluster.unhealthy_threshold or was is None):
            self.healthy[endpoint] = False
        now = self.healthy.get(endpoint)
        if now != was:
            log(f"endpoint {endpoint.host}:{endpoint.port} is {'healthy' if now else 'unhealthy'}")

    async def apply(self, listeners: list[Listener], clusters: dict[str, Cluster]) -> None:
        if clusters != self.clusters:
            self.clusters = clusters
            live = {e for c in clusters.values() for e in c.endpoints}
            for gone in set(self.healthy) - live:
                del self.healthy[gone]
                self.counts.pop(gone, None)
            names = ", ".join(
                f"{c.name}: {' '.join(f'{e.host}:{e.port}' for e in c.endpoints)}" for c in clusters.values()
            )
            log(f"clusters: {names or 'none'}")
        for listener in set(self.servers) - set(listeners):
            self.servers.pop(listener).close()
            log(f"stopped listening on {listener.address}:{listener.port}")
        for listener in listeners:
            if listener in self.servers:
                continue
            try:
                self.servers[listener] = await asyncio.start_server(
                    functools.partial(self.handle, listener),
                    listener.address,
                    listener.port,
                    reuse_address=True,
                )
            except OSError as error:
                log(f"cannot listen on {listener.address}:{listener.port}: {error}; retrying")
                continue
            log(f"listening on {listener.address}:{listener.port} for cluster {listener.cluster}")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(PIPE_CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
        writer.close()


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


def bootstrap_paths(config_path: str) -> tuple[str, str]:
    with open(config_path, encoding="utf-8") as handle:
        bootstrap = yaml.safe_load(handle) or {}
    dynamic = bootstrap.get("dynamic_resources") or {}
    cds = ((dynamic.get("cds_config") or {}).get("path_config_source") or {}).get("path")
    lds = ((dynamic.get("lds_config") or {}).get("path_config_source") or {}).get("path")
    if not cds or not lds:
        raise SystemExit(
            f"{config_path}: no dynamic_resources cds_config/lds_config path_config_source paths"
        )
    return str(cds), str(lds)


async def run(config_path: str) -> None:
    cds_path, lds_path = bootstrap_paths(config_path)
    log(f"bootstrap {config_path}: CDS {cds_path}, LDS {lds_path}")
    balancer = Balancer()
    checker = asyncio.create_task(balancer.health_loop())
    seen: tuple[object, object] | None = None
    while not checker.done():
        stamps = (_stamp(cds_path), _stamp(lds_path))
        if stamps != seen or len(balancer.servers) < len(parse_listeners(lds_path)):
            seen = stamps
            await balancer.apply(parse_listeners(lds_path), parse_clusters(cds_path))
        await asyncio.sleep(POLL_SECONDS)
    checker.result()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="envoy", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-c", "--config-path", required=True)
    # envoy options kind does not pass are accepted and ignored, so that a different invocation still runs.
    args, _ = parser.parse_known_args(argv)
    asyncio.run(run(args.config_path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
