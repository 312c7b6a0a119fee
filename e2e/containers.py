"""Running the suite's image (built by ``make image``) against the local control plane.

Used by the image checks in ``make test`` (``tests/image/``) and by ``make bench-image``. A container reaches
the fixture's apiserver on loopback through the host network, with a kubeconfig that carries its
credentials inline (the fixture's own names key files that only root may read).
"""

from __future__ import annotations

import base64
import dataclasses
import pathlib
import subprocess
import tomllib

from e2e import controlplane

IMAGE = "kube-upgrade-controllers:dev"
# What the chart's pods get: a non-root uid, a read-only root and an emptyDir on /tmp.
RESTRICTED = ("--read-only", "--tmpfs", "/tmp", "--user", "65532:65532")
KUBECONFIG_IN_CONTAINER = "/etc/kube-upgrade-controllers/kubeconfig"


class ImageMissingError(RuntimeError):
    pass


def console_scripts() -> list[str]:
    """The console scripts pyproject.toml declares: every one must work in the image."""
    project = tomllib.loads((controlplane.REPO / "pyproject.toml").read_text())["project"]
    return sorted(project["scripts"])


def inspect(image: str, template: str) -> str:
    """One field of ``docker image inspect`` (a Go template); a clear error when the engine lacks the image
    (``make image`` builds ours) or no engine answers."""
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", template, image],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ImageMissingError(
            f"{image} is not in the local engine ({result.stderr.strip()}): run `make image`"
        )
    return result.stdout.strip()


def require_image(image: str = IMAGE) -> str:
    """The image's id."""
    return inspect(image, "{{.Id}}")


def memory_mib(*containers: str) -> list[float]:
    """Each container's memory as ``docker stats`` reports it (cgroup usage less inactive file cache), in MiB.
    Raises CalledProcessError when one of them is gone."""
    result = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *containers],
        capture_output=True,
        text=True,
        check=True,
    )
    return [_mib(line.split("/")[0].strip()) for line in result.stdout.splitlines() if "/" in line]


def _mib(figure: str) -> float:
    """``553.7MiB`` → 553.7."""
    for unit, factor in (("GiB", 1024.0), ("MiB", 1.0), ("KiB", 1 / 1024), ("B", 1 / 1024 / 1024)):
        if figure.endswith(unit):
            return float(figure.removesuffix(unit)) * factor
    raise RuntimeError(f"unreadable docker stats figure {figure!r}")


def write_inline_kubeconfig(plane: controlplane.ControlPlane, path: pathlib.Path) -> pathlib.Path:
    """The fixture's admin kubeconfig with its CA, certificate and key inline, readable by any uid."""

    def inline(name: str) -> str:
        return base64.b64encode((plane.pki / name).read_bytes()).decode()

    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: fixture
  cluster: {{server: "{plane.server}", certificate-authority-data: {inline("ca.crt")}}}
users:
- name: {controlplane.ADMIN_USER}
  user: {{client-certificate-data: {inline("admin.crt")}, client-key-data: {inline("admin.key")}}}
contexts:
- name: fixture
  context: {{cluster: fixture, user: {controlplane.ADMIN_USER}}}
current-context: fixture
"""
    )
    path.chmod(0o644)
    return path


@dataclasses.dataclass(frozen=True)
class Run:
    """``docker run`` of the image on the host network, the kubeconfig mounted read-only at ``KUBECONFIG_IN_CONTAINER``."""

    kubeconfig: pathlib.Path
    image: str = IMAGE
    restricted: bool = True

    def argv(
        self, *command: str, name: str = "", env: dict[str, str] | None = None, detach: bool = False
    ) -> list[str]:
        argv = ["docker", "run", "--network", "host"]
        argv += ["--detach"] if detach else []
        argv += ["--name", name] if name else ["--rm"]
        argv += list(RESTRICTED) if self.restricted else []
        argv += ["--volume", f"{self.kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro"]
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, self.image, *command]

    def __call__(
        self, *command: str, name: str = "", env: dict[str, str] | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*command, name=name, env=env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def remove(name: str) -> None:
    subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def changed_paths(name: str, *, ignore: list[str]) -> list[str]:
    """What a (stopped) container changed in its image's filesystem, as ``docker diff`` lists it, except the
    mount points in ``ignore`` and the directories the engine made for them."""
    made_by_engine = {
        str(parent)
        for path in ignore
        for parent in (pathlib.PurePosixPath(path), *pathlib.PurePosixPath(path).parents)
    }
    result = subprocess.run(["docker", "diff", name], capture_output=True, text=True, check=True)
    return [line for line in result.stdout.splitlines() if line.split(" ", 1)[1] not in made_by_engine]
