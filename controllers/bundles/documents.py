"""A bundle's files → its documents, pure: YAML read within bounds, variables substituted as values, every
document validated. The one loader of bundles (addon-updater's decision, upgrade-readiness's addon-bundle
check), so that a hostile bundle is the same error everywhere.

Bounds (:class:`Limits`): bytes of the bundle, documents, nesting depth, aliases, and nodes with every alias
expanded (what the objects hold once serialised). A billion-laughs bundle is refused while its node graph is
still small; 20,000 nested ``[`` are refused at the depth bound, before Python's recursion limit.

Variables are values: ``${NAME}`` is replaced inside each parsed scalar (a plain scalar is then typed as YAML
types it: ``replicas: ${N}`` with N=2 is the integer 2), so a value can never add a document, a key or any
structure. The text of the files is substituted as well (what the directory target writes, comments kept) and
must parse to exactly the same documents; a value that would change the structure there (a newline and
``---``, a quote that ends a quoted scalar, ``key: value``) is refused with an error naming the variable.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from controllers.bundles import model
from controllers.structs import fields, redact

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """What one bundle may hold, all files together."""

    bytes: int = 4 * MIB  # of the files, before and after substitution
    documents: int = 1000
    depth: int = 100  # nesting of mappings and sequences, aliases followed
    aliases: int = 1000
    nodes: int = 100_000  # scalars, mappings and sequences, every alias counted as often as it is used


LIMITS = Limits()


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    files: tuple[model.BundleFile, ...]  # the files with variables substituted (the directory target's)
    manifests: tuple[model.Manifest, ...]


_VARIABLE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load(bundle: model.Bundle, *, variables: Mapping[str, str], limits: Limits = LIMITS) -> Loaded:
    """Every document of every file, validated: within ``limits``; every variable known and substituted as a
    value; each document a mapping with apiVersion, kind and metadata.name (``kind: List`` flattened, empty
    documents skipped), representable as JSON; no object twice. Raises BundleError."""
    budget = _Budget(limits)
    files: list[model.BundleFile] = []
    manifests: list[model.Manifest] = []
    for file in bundle.files:
        budget.spend_bytes(file.name, file.text)
        documents = _read(file.text, file=file.name, variables=variables, budget=budget)
        rendered = substitute_text(file.text, variables=variables)
        if rendered != file.text:
            budget.spend_bytes(file.name, rendered, instead_of=file.text)
            _check_structure(file, rendered=rendered, documents=documents, variables=variables, limits=limits)
        files.append(model.BundleFile(name=file.name, text=rendered))
        manifests.extend(_manifests(documents, file=file.name))
    _check_duplicates(manifests)
    return Loaded(files=tuple(files), manifests=tuple(manifests))


def substitute_text(text: str, *, variables: Mapping[str, str]) -> str:
    """``text`` with every known ``${NAME}`` replaced and ``$${NAME}`` turned into a literal ``${NAME}``; an
    unknown name stays (it can only be in a comment: in a value it is an error of :func:`load`)."""

    def replace(match: re.Match[str]) -> str:
        escaped, name = match[1], match[2]
        if escaped or name not in variables:
            return "${" + name + "}" if escaped else match[0]
        return variables[name]

    return _VARIABLE.sub(replace, text)


# --- reading one file within the bounds --------------------------------------------------------------------


class _Exceeded(Exception):
    """A bound of :class:`Limits` was crossed (the message says which)."""


@dataclasses.dataclass(slots=True)
class _Budget:
    """What the bundle has used of its limits so far."""

    limits: Limits
    bytes: int = 0
    documents: int = 0
    nodes: int = 0

    def spend_bytes(self, file: str, text: str, *, instead_of: str = "") -> None:
        self.bytes += len(text.encode()) - len(instead_of.encode())
        if self.bytes > self.limits.bytes:
            raise model.BundleError(
                "limit", f"{file}: the bundle is larger than {self.limits.bytes} bytes (limit)"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class _Marked:
    """A file's text with every ``${NAME}`` and ``$${NAME}`` replaced by a placeholder that YAML reads as a
    plain word anywhere (``{`` and ``}`` may not stand in a plain scalar of a flow collection), and what each
    placeholder stands for: (escaped, name)."""

    text: str
    marker: re.Pattern[str]
    variables: tuple[tuple[bool, str], ...]

    @classmethod
    def of(cls, text: str) -> _Marked:
        word = "KUCVAR"
        while word in text:  # a marker the text does not hold
            word += "X"
        found: list[tuple[bool, str]] = []

        def mark(match: re.Match[str]) -> str:
            found.append((bool(match[1]), match[2]))
            return f"{word}{len(found) - 1}{word}"

        marked = _VARIABLE.sub(mark, text)
        return cls(marked, re.compile(f"{word}([0-9]+){word}"), tuple(found))


class _Loader(yaml.SafeLoader):
    """YAML as kubectl reads it (an unquoted 2026-01-31 is a string: JSON has no dates), composed within the
    bounds, with variables substituted into scalars as they are composed (``variables`` None: none are)."""

    def __init__(
        self, text: str, *, limits: Limits, variables: Mapping[str, str] | None, budget: _Budget
    ) -> None:
        self.marked = _Marked.of(text) if variables is not None else None
        super().__init__(self.marked.text if self.marked else text)
        self.limits = limits
        self.variables = variables
        self.budget = budget
        self.unknown: set[str] = set()
        self.depth = 0
        self.aliases = 0
        # Per document: id(node) → (height, size with aliases expanded), of every node composed so far.
        self.measured: dict[int, tuple[int, int]] = {}

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # The scanner keeps a possible simple key per open flow collection and walks them all for every
        # token: 20,000 nested '[' cost seconds there before any node is composed. Stop it at the bound.
        if self.flow_level >= self.limits.depth:
            raise _Exceeded(f"nested deeper than {self.limits.depth} levels")
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.limits.aliases:
                raise _Exceeded(f"more than {self.limits.aliases} aliases")
            node = super().compose_node(parent, index)
            if id(node) not in self.measured:  # an alias of a collection it is inside of
                raise _Exceeded("an alias refers to a collection that contains it (a recursive structure)")
            self._count(self.measured[id(node)][1])  # it stands for all of its nodes once more
            return node
        if self.depth >= self.limits.depth:
            raise _Exceeded(f"nested deeper than {self.limits.depth} levels")
        self.depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if node is not None:
            self._measure(node)
            self._count(1)
        return node

    def _count(self, nodes: int) -> None:
        """Every node composed and every node an alias repeats count, as they come (a long flat list stops
        at the bound, not after it was composed whole)."""
        self.budget.nodes += nodes
        if self.budget.nodes > self.limits.nodes:
            raise _Exceeded(f"more than {self.limits.nodes} nodes once aliases are expanded")

    def _measure(self, node: yaml.Node) -> None:
        """Record the node's height and size with aliases expanded (its children are measured already)."""
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        sizes = [self.measured[id(child)] for child in children]
        height = 1 + max((h for h, _ in sizes), default=0)
        if height > self.limits.depth:
            raise _Exceeded(f"nested deeper than {self.limits.depth} levels once aliases are followed")
        self.measured[id(node)] = (height, 1 + sum(s for _, s in sizes))

    def compose_document(self) -> yaml.Node | None:
        self.budget.documents += 1
        if self.budget.documents > self.limits.documents:
            raise _Exceeded(f"more than {self.limits.documents} documents")
        self.measured = {}
        return super().compose_document()

    def compose_scalar_node(self, anchor: str | None) -> yaml.ScalarNode:  # type: ignore[override]
        event = self.get_event()  # type: ignore[no-untyped-call]
        value = self._substitute(event.value) if self.marked else event.value
        tag = event.tag
        if tag is None or tag == "!":  # implicit: typed by its (substituted) text, as YAML types a plain one
            tag = self.resolve(yaml.ScalarNode, value, event.implicit)  # type: ignore[no-untyped-call]
            if value != event.value and tag in _SYNTAX_TAGS:  # a value is data, never YAML's syntax
                tag = self.DEFAULT_SCALAR_TAG
        node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark, style=event.style)
        if anchor is not None:
            self.anchors[anchor] = node
        return node

    def _substitute(self, value: str) -> str:
        """The scalar's placeholders replaced, in one pass (a value is never read for variables again)."""
        assert self.marked is not None and self.variables is not None
        marked, variables = self.marked, self.variables

        def replace(match: re.Match[str]) -> str:
            escaped, name = marked.variables[int(match[1])]
            if escaped or name not in variables:
                if not escaped:
                    self.unknown.add(name)
                return "${" + name + "}"
            return variables[name]

        return marked.marker.sub(replace, value)


# What a plain "!", "&", "*", "=" or "<<" resolves to: YAML's own syntax, not data.
_SYNTAX_TAGS = frozenset({"tag:yaml.org,2002:yaml", "tag:yaml.org,2002:value", "tag:yaml.org,2002:merge"})


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _read(text: str, *, file: str, variables: Mapping[str, str] | None, budget: _Budget) -> list[Any]:
    """The documents of one file (None for an empty one). Raises BundleError."""
    documents: list[Any] = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text, limits=budget.limits, variables=variables, budget=budget)
        while loader.check_node():
            node = loader.get_node()
            documents.append(loader.construct_document(node))
    except _Exceeded as error:
        raise model.BundleError("limit", f"{file}: {error} (limit)") from None
    except RecursionError:  # a bound above should come first; never let it reach a retry loop
        raise model.BundleError("limit", f"{file}: nested too deeply (limit)") from None
    except (yaml.YAMLError, ValueError) as error:  # ValueError: an explicit !!timestamp that is no date
        raise model.BundleError("parse", f"{file}: not valid YAML: {redact.describe(error)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if loader.unknown:
        known = ", ".join(sorted(variables or {})) or "none"
        raise model.BundleError(
            "variable", f"{file}: unknown variable(s) {', '.join(sorted(loader.unknown))} (known: {known})"
        )
    return documents


def _check_structure(
    file: model.BundleFile,
    *,
    rendered: str,
    documents: list[Any],
    variables: Mapping[str, str],
    limits: Limits,
) -> None:
    """The substituted text must read as exactly the documents substituted value by value; else name the
    variable whose value changes the structure. (Each reading is bounded by ``limits`` on its own.)"""
    if _reads_as(rendered, documents, file=file.name, limits=limits):
        return
    used = sorted({m[2] for m in _VARIABLE.finditer(file.text) if not m[1] and m[2] in variables})
    culprits = []
    for name in used:
        # Only this variable's value; the others a plain word, in both readings.
        alone = dict.fromkeys(used, "x") | {name: variables[name]}
        expected = _read(file.text, file=file.name, variables=alone, budget=_Budget(limits))
        if not _reads_as(
            substitute_text(file.text, variables=alone), expected, file=file.name, limits=limits
        ):
            culprits.append(name)
    names = ", ".join(culprits or used)
    raise model.BundleError(
        "variable",
        f"{file.name}: the value of variable(s) {names} would change the YAML structure (add a document, a "
        "key or nesting, or end a quoted value) where substituted into the text; a variable may only be a "
        "value",
    )


def _reads_as(text: str, documents: list[Any], *, file: str, limits: Limits) -> bool:
    try:
        again = _read(text, file=file, variables=None, budget=_Budget(limits))
    except model.BundleError:
        return False
    return _same(again, documents)


def _same(a: Any, b: Any) -> bool:
    """Equal, with types compared strictly (True is not 1) and NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


# --- documents → manifests ---------------------------------------------------------------------------------


def _manifests(documents: Iterable[Any], *, file: str) -> list[model.Manifest]:
    manifests: list[model.Manifest] = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        where = f"{file} document {index + 1}"
        for item in _list_items(document, where):
            _check_document(item, where)
            manifests.append(model.Manifest(file=file, index=index, body=item))
    return manifests


def _check_duplicates(manifests: Iterable[model.Manifest]) -> None:
    seen: dict[tuple[str, str, str, str], str] = {}
    for manifest in manifests:
        identity = (manifest.group, manifest.kind, manifest.namespace, manifest.name)
        if identity in seen:
            raise model.BundleError(
                "duplicate", f"{manifest.where}: {manifest.kind} {manifest.name} is also in {seen[identity]}"
            )
        seen[identity] = manifest.where


def _list_items(document: object, where: str) -> list[Any]:
    if isinstance(document, dict) and document.get("kind") == "List" and "items" in document:
        items = document["items"]
        if not isinstance(items, list):
            raise model.BundleError("invalid", f"{where}: List items must be a list")
        return items
    return [document]


def _check_document(document: object, where: str) -> None:
    if not isinstance(document, dict):
        raise model.BundleError("invalid", f"{where}: not a mapping (got {type(document).__name__})")
    for field in ("apiVersion", "kind"):
        value = document.get(field)
        if not isinstance(value, str) or not value:
            raise model.BundleError("invalid", f"{where}: missing {field}")
    metadata = fields.mapping(document.get("metadata"))
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise model.BundleError("invalid", f"{where}: {document['kind']} without metadata.name")
    namespace = metadata.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise model.BundleError("invalid", f"{where}: metadata.namespace must be a string")
    for field in ("labels", "annotations"):
        if metadata.get(field) is not None and not isinstance(metadata.get(field), dict):
            raise model.BundleError("invalid", f"{where}: metadata.{field} must be a mapping")
    try:
        json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as error:  # !!binary, !!set, .nan: what the API cannot take
        raise model.BundleError("invalid", f"{where}: not representable as JSON: {error}") from None
