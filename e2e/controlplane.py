"""A real local Kubernetes control plane: etcd + kube-apiserver on loopback.

Used by the pytest session fixture (``tests/conftest.py``), by ``make cluster-up``/``make cluster-down``
and by the demo. The binaries come from ``e2e/build-tool.sh`` (built from the Go module proxy, cached).

    python -m e2e.controlplane up   --dir .cluster   # start in the background, write .cluster/env
    python -m e2e.controlplane down --dir .cluster   # stop it and delete its data
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence

REPO = pathlib.Path(__file__).resolve().parent.parent
BUILD_TOOL = REPO / "e2e" / "build-tool.sh"
ADMIN_USER = "fixture-admin"
SVM_FEATURE_GATE = "StorageVersionMigrator"


# Pins the environment may override (`make e2e KIND_OLD_RELEASE=v1.35.4 KIND_NEW_RELEASE=v1.36.3`), as
# e2e/kind/common.sh does for the scripts.
OVERRIDABLE = ("KIND_OLD_RELEASE", "KIND_NEW_RELEASE")


def read_versions() -> dict[str, str]:
    """The pinned tool versions from ``e2e/versions.env`` (the kind release pins as the environment sets them)."""
    versions: dict[str, str] = {}
    for line in (REPO / "e2e" / "versions.env").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    versions.update({key: os.environ[key] for key in OVERRIDABLE if os.environ.get(key)})
    return versions


def tool_path(tool: str, *, version: str | None = None) -> pathlib.Path:
    """Path of a cached fixture binary (its pin in versions.env unless ``version``), building it first if
    missing (progress goes to stderr)."""
    result = subprocess.run(
        [str(BUILD_TOOL), tool, *([version] if version else [])],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        stderr=None,
    )
    return pathlib.Path(result.stdout.strip().splitlines()[-1])


def storage_migration_flags(kube_version: str, *, apiserver: bool) -> list[str]:
    """What serves StorageVersionMigrations (uso-runner's in-tree method): GA and on by default from 1.37
    (nothing to ask for); beta in 1.35-1.36, off unless the feature gate (and, for the apiserver, the API
    version) is turned on."""
    match = re.match(r"v?(\d+)\.(\d+)", kube_version)
    if match is None or (int(match[1]), int(match[2])) >= (1, 37):
        return []
    gate = [f"--feature-gates={SVM_FEATURE_GATE}=true"]
    return [*gate, "--runtime-config=storagemigration.k8s.io/v1beta1=true"] if apiserver else gate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(directory: pathlib.Path) -> None:
    """A CA, a serving cert for 127.0.0.1/localhost, an admin client cert (O=system:masters), SA keys."""
    directory.mkdir(parents=True, exist_ok=True)
    days = "3650"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", days, "-subj", "/CN=fixture-ca", cwd=directory)  # fmt: skip
    (directory / "serving.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n"
    )
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject, ext in (
        ("serving", "/CN=kube-apiserver", "serving.ext"),
        ("admin", f"/O=system:masters/CN={ADMIN_USER}", "client.ext"),
    ):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subject, cwd=directory)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", days, "-extfile", ext, cwd=directory)  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)


def write_kubeconfig(
    path: pathlib.Path, *, server: str, pki: pathlib.Path, user: str = ADMIN_USER, cert: str = "admin"
) -> None:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: fixture
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: {user}
  user:
    client-certificate: {pki / f"{cert}.crt"}
    client-key: {pki / f"{cert}.key"}
contexts:
- name: fixture
  context: {{cluster: fixture, user: {user}}}
current-context: fixture
"""
    )


@dataclasses.dataclass
class ControlPlane:
    """One etcd and one kube-apiserver, each in its own process group, data in ``root``."""

    root: pathlib.Path
    kube_version: str
    etcd_bin: pathlib.Path
    etcdctl_bin: pathlib.Path
    apiserver_bin: pathlib.Path
    etcd_port: int = 0
    apiserver_port: int = 0
    etcd: subprocess.Popen[bytes] | None = None
    apiserver: subprocess.Popen[bytes] | None = None
    controller_manager: subprocess.Popen[bytes] | None = None
    # Killed with the thread that started them, so a killed test run leaves no orphans; `make cluster-up`
    # turns this off: its processes outlive the command on purpose.
    tied_to_parent: bool = True
    # More kube-apiserver flags (a test's: e.g. an API group turned off with --runtime-config).
    apiserver_flags: tuple[str, ...] = ()

    @property
    def pki(self) -> pathlib.Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.root / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def etcd_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def bin_dir(self) -> pathlib.Path:
        """A directory with links to the three binaries, to put first on PATH."""
        return self.root / "bin"

    def start(self, *, timeout: float = 90.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        make_pki(self.pki)
        self.bin_dir.mkdir(exist_ok=True)
        for binary in (self.etcd_bin, self.etcdctl_bin, self.apiserver_bin):
            link = self.bin_dir / binary.name
            link.unlink(missing_ok=True)
            link.symlink_to(binary)
        self.etcd_port = free_port()
        self.start_etcd()
        self.apiserver_port = free_port()
        write_kubeconfig(self.kubeconfig, server=self.server, pki=self.pki)
        self.start_apiserver(timeout=timeout)

    def start_etcd(self, *, timeout: float = 30.0) -> None:
        peer = free_port()
        self.etcd = self._spawn(
            "etcd",
            [
                str(self.etcd_bin),
                "--name=fixture",
                f"--data-dir={self.root / 'etcd-data'}",
                f"--listen-client-urls={self.etcd_endpoint}",
                f"--advertise-client-urls={self.etcd_endpoint}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=fixture=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait_ready(f"{self.etcd_endpoint}/health", process=self.etcd, timeout=timeout, tls=False)

    def start_apiserver(self, *, timeout: float = 90.0) -> None:
        pki = self.pki
        self.apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.apiserver_bin),
                f"--etcd-servers={self.etcd_endpoint}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                # Compaction is driven by tests (etcdctl compact) so that a 410 is produced on purpose;
                # PodTemplates bypass the watch cache, so their watches meet etcd's compaction directly.
                "--etcd-compaction-interval=0",
                "--watch-cache-sizes=podtemplates#0",
                *storage_migration_flags(self.kube_version, apiserver=True),
                # resource.k8s.io/v1beta1 (removed in 1.38): a deprecated API for upgrade-readiness to find.
                "--runtime-config=resource.k8s.io/v1beta1=true",
                f"--cert-dir={self.root / 'apiserver-certs'}",
                *self.apiserver_flags,
            ],
        )
        self._wait_ready(f"{self.server}/readyz", process=self.apiserver, timeout=timeout, tls=True)

    def start_controller_manager(
        self,
        *,
        timeout: float = 90.0,
        controllers: Sequence[str] = ("garbage-collector-controller", "storage-version-migrator-controller"),
        flags: Sequence[str] = (),
    ) -> None:
        """kube-controller-manager with only ``controllers`` and ``flags``: by default the built-in storage
        version migrator (and the garbage collector, whose informers it needs). Not part of ``start()``: no
        other test wants controllers running."""
        port = free_port()
        self.controller_manager = self._spawn(
            "kube-controller-manager",
            [
                str(tool_path("kube-controller-manager")),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.root / 'controller-manager-certs'}",
                "--leader-elect=false",
                f"--controllers={','.join(controllers)}",
                *storage_migration_flags(self.kube_version, apiserver=False),
                *flags,
            ],
        )
        # It serves /healthz with a self-signed certificate of its own: checked for liveness, not trust.
        self._wait_ready(
            f"https://127.0.0.1:{port}/healthz",
            process=self.controller_manager,
            timeout=timeout,
            tls=True,
            verify=False,
        )

    def stop_controller_manager(self) -> None:
        _terminate(self.controller_manager)
        self.controller_manager = None

    def stop_apiserver(self) -> None:
        _terminate(self.apiserver)
        self.apiserver = None

    def user_kubeconfig(self, user: str, *, group: str = "") -> pathlib.Path:
        """A kubeconfig for ``user`` (a client certificate from the fixture's CA, in ``group`` if given, else in
        none: not exempt from API priority and fairness, unlike the admin); RBAC for it is the caller's
        business."""
        subject = f"/O={group}/CN={user}" if group else f"/CN={user}"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{user}.key", "-out", f"{user}.csr",
                 "-subj", subject, cwd=self.pki)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{user}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{user}.crt", "-days", "3650", "-extfile", "client.ext", cwd=self.pki)  # fmt: skip
        path = self.root / f"kubeconfig-{user}"
        write_kubeconfig(path, server=self.server, pki=self.pki, user=user, cert=user)
        return path

    def freeze_apiserver(self, frozen: bool) -> None:
        """SIGSTOP the kube-apiserver (it holds its connections and answers nothing), or SIGCONT it."""
        assert self.apiserver is not None
        os.killpg(self.apiserver.pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def stop_etcd(self) -> None:
        """Stop etcd, keeping its data: ``start_etcd()`` brings it back on the same port."""
        _terminate(self.etcd)
        self.etcd = None

    def stop(self) -> None:
        self.stop_controller_manager()
        self.stop_apiserver()
        _terminate(self.etcd)
        self.etcd = None

    def etcdctl(self, *args: str) -> bytes:
        return subprocess.run(
            [str(self.etcdctl_bin), f"--endpoints={self.etcd_endpoint}", *args],
            check=True,
            capture_output=True,
        ).stdout

    def env_lines(self) -> list[str]:
        return [
            f"export KUBECONFIG={self.kubeconfig}",
            f"export ETCDCTL_ENDPOINTS={self.etcd_endpoint}",
            f'export PATH="{self.bin_dir}:$PATH"',
        ]

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        with log:
            return subprocess.Popen(
                argv,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.tied_to_parent else None,
            )

    def admin_tls(self) -> ssl.SSLContext:
        """TLS as the admin user, trusting the fixture's CA (for plain HTTPS calls, e.g. ``/metrics``)."""
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def _wait_ready(
        self, url: str, *, process: subprocess.Popen[bytes], timeout: float, tls: bool, verify: bool = True
    ) -> None:
        context: ssl.SSLContext | None = None
        if tls and not verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif tls:
            context = self.admin_tls()
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{url}: process exited with {process.returncode}; see logs in {self.root}"
                )
            try:
                with urllib.request.urlopen(url, context=context, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                last_error = str(error)
            time.sleep(0.2)
        raise TimeoutError(f"{url} not ready after {timeout:.0f} s: {last_error}")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent thread exits (Linux prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def _terminate(process: subprocess.Popen[bytes] | None, *, grace: float = 10.0) -> None:
    """Stop a process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def apiserver_version(binary: pathlib.Path) -> str:
    """The release a kube-apiserver binary says it is (``Kubernetes v1.37.2`` → ``v1.37.2``)."""
    said = subprocess.run([str(binary), "--version"], check=True, capture_output=True, text=True).stdout
    return said.split()[-1]


def build(*, root: pathlib.Path | None = None) -> ControlPlane:
    """A ControlPlane (not started) in ``root`` (default: a fresh temp dir), binaries built if missing (or
    taken from ``KUBEBUILDER_ASSETS``, see e2e/build-tool.sh: then its version is the one that binary says)."""
    apiserver = tool_path("kube-apiserver")
    return ControlPlane(
        root=root or pathlib.Path(tempfile.mkdtemp(prefix="kuc-fixture-")),
        kube_version=apiserver_version(apiserver),
        etcd_bin=tool_path("etcd"),
        etcdctl_bin=tool_path("etcdctl"),
        apiserver_bin=apiserver,
    )


@contextlib.contextmanager
def running(*, apiserver_flags: Sequence[str] = ()) -> Iterator[ControlPlane]:
    """Start a control plane in a temp dir (kube-apiserver with ``apiserver_flags`` besides its own); stop
    it and delete its data on exit."""
    plane = dataclasses.replace(build(), apiserver_flags=tuple(apiserver_flags))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(plane.root, ignore_errors=True)


# --- make cluster-up / cluster-down -------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _read_pids(state: pathlib.Path) -> list[int]:
    pids_file = state / "pids"
    if not pids_file.exists():
        return []
    return [int(p) for p in pids_file.read_text().split()]


def up(state: pathlib.Path) -> int:
    if any(_alive(pid) for pid in _read_pids(state)):
        print(f"a cluster is already running (see {state / 'env'}); run 'make cluster-down' first")
        return 0
    down(state, quiet=True)
    plane = build(root=state.resolve())
    plane.tied_to_parent = False
    plane.start()
    assert plane.etcd is not None and plane.apiserver is not None
    (state / "pids").write_text(f"{plane.apiserver.pid} {plane.etcd.pid}\n")
    (state / "env").write_text("\n".join(plane.env_lines()) + "\n")
    print(f"cluster up at {plane.server} (kube-apiserver {plane.kube_version}); run: . {state / 'env'}")
    return 0


def down(state: pathlib.Path, *, quiet: bool = False) -> int:
    for pid in _read_pids(state):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in _read_pids(state)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in _read_pids(state):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    if state.exists():
        shutil.rmtree(state)
        if not quiet:
            print("cluster stopped, data deleted")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.controlplane", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "build"])
    parser.add_argument("--dir", type=pathlib.Path, default=REPO / ".cluster", help="state directory")
    args = parser.parse_args(argv)
    if args.action == "build":
        for tool in ("etcd", "etcdctl", "kube-apiserver"):
            print(tool_path(tool))
        return 0
    if args.action == "up":
        return up(args.dir)
    return down(args.dir)


if __name__ == "__main__":
    sys.exit(main())
