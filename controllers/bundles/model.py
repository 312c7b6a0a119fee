"""Add-on bundles, pure: what a bundle is, which one fits a minor, its variables, its documents validated.

Shared by addon-updater (which switches to a bundle) and upgrade-readiness (which checks that the next
minor's bundle is there and valid, with the same code). No I/O: files arrive as (name, text) pairs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

import yaml

from controllers.structs import fields

JSON = dict[str, Any]
Policy = Literal["exact", "nearestLower"]


FailureReason = Literal["variable", "parse", "invalid", "duplicate", "unknown_kind", "dry_run"]


FAILURE_REASONS: tuple[FailureReason, ...] = get_args(FailureReason)


CONFIGMAP_MINOR_LABEL = "addons.kube-upgrade-controllers.io/minor"


BUNDLE_FILE_SUFFIXES = (".yaml", ".yml", ".json")


_MINOR = re.compile(r"^(\d{1,4})\.(\d{1,4})$")


_VARIABLE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BundleError(Exception):
    """The bundle cannot be switched to; ``reason`` is the metric label, the message names file and document."""

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


def select_bundle(*, wanted: tuple[int, int], available: Iterable[str], policy: Policy) -> str | None:
    """The bundle minor to use for the agreed ``wanted`` minor: the same minor, or with ``nearestLower`` the
    closest minor below it when that one is missing. None: no bundle fits (change nothing)."""
    minors = {key: text for text in available if (key := parse_minor(text)) is not None}
    if wanted in minors:
        return minors[wanted]
    if policy == "nearestLower":
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


def substitute(text: str, *, variables: Mapping[str, str], file: str) -> str:
    """Replace every ``${NAME}``; ``$${NAME}`` stays as a literal ``${NAME}``. An unknown NAME is an error."""
    unknown: list[str] = []

    def replace(match: re.Match[str]) -> str:
        escaped, name = match[1], match[2]
        if escaped:
            return "${" + name + "}"
        if name not in variables:
            unknown.append(name)
            return match[0]
        return variables[name]

    result = _VARIABLE.sub(replace, text)
    if unknown:
        names = ", ".join(sorted(set(unknown)))
        raise BundleError(
            "variable",
            f"{file}: unknown variable(s) {names} (known: {', '.join(sorted(variables)) or 'none'})",
        )
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


def render(bundle: Bundle, *, variables: Mapping[str, str]) -> tuple[BundleFile, ...]:
    """The bundle's files with variables substituted (what the directory target writes)."""
    return tuple(
        BundleFile(name=f.name, text=substitute(f.text, variables=variables, file=f.name))
        for f in bundle.files
    )


def parse_documents(files: Iterable[BundleFile]) -> tuple[Manifest, ...]:
    """Every document of every file, validated: parses, is a mapping with apiVersion, kind and metadata.name;
    ``kind: List`` is flattened; empty documents are skipped; no object twice. Raises BundleError."""
    manifests: list[Manifest] = []
    for file in files:
        try:
            documents = list(yaml.load_all(file.text, Loader=_Loader))
        except (yaml.YAMLError, ValueError) as error:  # ValueError: an explicit !!timestamp that is no date
            raise BundleError("parse", f"{file.name}: not valid YAML: {_one_line(error)}") from error
        for index, document in enumerate(documents):
            if document is None:
                continue
            where = f"{file.name} document {index + 1}"
            items = _list_items(document, where)
            for item in items:
                _check_document(item, where)
                manifests.append(Manifest(file=file.name, index=index, body=item))
    seen: dict[tuple[str, str, str, str], str] = {}
    for manifest in manifests:
        identity = (manifest.group, manifest.kind, manifest.namespace, manifest.name)
        if identity in seen:
            raise BundleError(
                "duplicate", f"{manifest.where}: {manifest.kind} {manifest.name} is also in {seen[identity]}"
            )
        seen[identity] = manifest.where
    return tuple(manifests)


class _Loader(yaml.SafeLoader):
    """YAML as kubectl reads it: an unquoted 2026-01-31 is a string, not a date (JSON has no dates)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _list_items(document: object, where: str) -> list[Any]:
    if isinstance(document, dict) and document.get("kind") == "List" and "items" in document:
        items = document["items"]
        if not isinstance(items, list):
            raise BundleError("invalid", f"{where}: List items must be a list")
        return items
    return [document]


def _check_document(document: object, where: str) -> None:
    if not isinstance(document, dict):
        raise BundleError("invalid", f"{where}: not a mapping (got {type(document).__name__})")
    for field in ("apiVersion", "kind"):
        value = document.get(field)
        if not isinstance(value, str) or not value:
            raise BundleError("invalid", f"{where}: missing {field}")
    metadata = fields.mapping(document.get("metadata"))
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise BundleError("invalid", f"{where}: {document['kind']} without metadata.name")
    namespace = metadata.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise BundleError("invalid", f"{where}: metadata.namespace must be a string")
    for field in ("labels", "annotations"):
        if metadata.get(field) is not None and not isinstance(metadata.get(field), dict):
            raise BundleError("invalid", f"{where}: metadata.{field} must be a mapping")
    try:
        json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as error:  # !!binary, !!set, .nan: what the API cannot take
        raise BundleError("invalid", f"{where}: not representable as JSON: {error}") from error


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def bundle_file_name(name: str) -> bool:
    return name.endswith(BUNDLE_FILE_SUFFIXES) and not name.startswith(".")
