"""Kubernetes version strings as masters report them, compared by (major, minor, patch)."""

from __future__ import annotations

import dataclasses
import re

# v1.31.4, v1.31.4-eks-1234abc, v1.30.2+k3s1, v1.29.6-gke.1326000, v1.28.0-rc.1
_VERSION = re.compile(
    r"^v?(?P<major>\d{1,4})\.(?P<minor>\d{1,4})\.(?P<patch>\d{1,6})(?P<suffix>[-+][0-9A-Za-z.+_-]*)?$"
)


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Version:
    """A parsed version. Equality and ordering use (major, minor, patch) only; ``raw`` is for display."""

    major: int
    minor: int
    patch: int
    raw: str = dataclasses.field(compare=False)

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @property
    def minor_key(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def minor_text(self) -> str:
        """``1.36``: how bundles and logs name a minor."""
        return f"{self.major}.{self.minor}"

    def __str__(self) -> str:
        return self.raw


def parse_version(text: object) -> Version | None:
    """The version in ``text``, or None when it is not a Kubernetes version (never raises)."""
    if not isinstance(text, str):
        return None
    match = _VERSION.match(text.strip())
    if match is None:
        return None
    return Version(int(match["major"]), int(match["minor"]), int(match["patch"]), raw=text.strip())


def image_tag(image: object) -> str:
    """The tag of a container image reference (``registry:5000/kube-apiserver:v1.31.4@sha256:…`` → ``v1.31.4``)."""
    if not isinstance(image, str):
        return ""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def minors_behind(*, newer: Version, older: Version) -> int:
    """How many minors ``older`` is behind ``newer`` (negative when it is ahead); majors count as 100 minors."""
    return (newer.major - older.major) * 100 + newer.minor - older.minor
