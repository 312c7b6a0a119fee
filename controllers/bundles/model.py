"""Add-on bundles, pure: what a bundle is, which one fits a minor, its variables, its digest (the documents:
``documents``).

Shared by addon-updater (which switches to a bundle) and upgrade-readiness (which checks that the next
minor's bundle is there and valid, with the same code). No I/O: files arrive as (name, text) pairs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from controllers.structs import redact

JSON = dict[str, Any]
BundleSelection = Literal["exact", "nearestLower"]


FailureReason = Literal[
    "variable", "parse", "limit", "invalid", "duplicate", "unknown_kind", "policy", "dry_run"
]


FAILURE_REASONS: tuple[FailureReason, ...] = get_args(FailureReason)


CONFIGMAP_MINOR_LABEL = "addons.kube-upgrade-controllers.io/minor"


BUNDLE_FILE_SUFFIXES = (".yaml", ".yml", ".json")


_MINOR = re.compile(r"^(\d{1,4})\.(\d{1,4})$")


_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BundleError(redact.Redacted):
    """The bundle cannot be switched to; ``reason`` is the metric label, the message names file and document
    (built from names and redacted parts only: never a value of the bundle)."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class BundleFile:
    name: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Bundle:
    minor: str  # "1.36"
    source: str  # where it came from, for logs and Events
    files: tuple[BundleFile, ...]


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """The identity of an object: API group (not version), kind, namespace ("" when cluster-scoped), name."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{kind} {self.namespace}/{self.name}" if self.namespace else f"{kind} {self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """One document of a bundle, after substitution and parsing."""

    file: str
    index: int  # position of the document in its file, from 0
    body: JSON

    @property
    def api_version(self) -> str:
        return str(self.body["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def group(self) -> str:
        return group_of(self.api_version)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"].get("namespace") or "")

    @property
    def where(self) -> str:
        return f"{self.file} document {self.index + 1}"


def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def parse_minor(text: str) -> tuple[int, int] | None:
    """``1.36`` → (1, 36); anything else → None (directories such as ``README`` or ``1.36.2`` are ignored)."""
    match = _MINOR.match(text)
    return (int(match[1]), int(match[2])) if match else None


def select_bundle(
    *, wanted: tuple[int, int], available: Iterable[str], selection: BundleSelection
) -> str | None:
    """The bundle minor to use for the agreed ``wanted`` minor: the same minor, or with ``nearestLower`` the
    closest minor below it when that one is missing. None: no bundle fits (change nothing)."""
    minors = {key: text for text in available if (key := parse_minor(text)) is not None}
    if wanted in minors:
        return minors[wanted]
    if selection == "nearestLower":
        lower = [key for key in minors if key < wanted]
        if lower:
            return minors[max(lower)]
    return None


def variable_problem(values: Sequence[str]) -> str | None:
    """Config check for ``NAME=VALUE`` items."""
    try:
        parse_variables(values)
    except ValueError as error:
        return str(error)
    return None


def parse_variables(values: Sequence[str]) -> dict[str, str]:
    """``["CLUSTER_DOMAIN=cluster.local"]`` → {"CLUSTER_DOMAIN": "cluster.local"}; raises ValueError."""
    result: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not _VARIABLE_NAME.match(name):
            raise ValueError(f"{item!r} is not NAME=VALUE with NAME made of letters, digits and _")
        result[name] = value
    return result


def bundle_digest(bundle: Bundle, *, variables: Mapping[str, str]) -> str:
    """sha256 over the files (by name) and the variables: equal digest ⇔ the same objects would be applied."""
    sha = hashlib.sha256()
    for file in sorted(bundle.files, key=lambda f: f.name):
        sha.update(b"file\0" + file.name.encode() + b"\0" + file.text.encode() + b"\0")
    for name in sorted(variables):
        sha.update(b"var\0" + name.encode() + b"\0" + variables[name].encode() + b"\0")
    return sha.hexdigest()


def short_digest(digest: str) -> str:
    return digest[:12]


def bundle_file_name(name: str) -> bool:
    return name.endswith(BUNDLE_FILE_SUFFIXES) and not name.startswith(".")
