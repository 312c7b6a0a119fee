"""API discovery, the one round of it every controller uses: which resources the apiserver serves, at which
versions (and which is its group's preferred one), with which kind, verbs and storage hash.

Per group-version discovery documents (``/api/v1``, ``/apis/<group>/<version>``) carry
``storageVersionHash`` for every resource the apiserver stores itself; APIServices with ``spec.service`` name
the group-versions served by an aggregated apiserver instead. The parsing functions are pure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from controllers.kube import resources, retry
from controllers.kube.client import Kube
from controllers.structs import fields

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ApiResource:
    """One resource of a discovery document (``name`` without subresources)."""

    group: str
    version: str
    name: str  # the plural
    kind: str
    namespaced: bool
    verbs: frozenset[str]
    storage_version_hash: str  # "" when the apiserver does not store it itself

    @property
    def group_resource(self) -> str:
        return f"{self.name}.{self.group}" if self.group else self.name

    @property
    def resource(self) -> resources.Resource:
        return resources.Resource(self.group, self.version, self.name, namespaced=self.namespaced)


def _core_versions(core: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [("", v) for v in fields.strings(core.get("versions"))]


def _group_versions(group: Mapping[str, Any]) -> list[str]:
    return fields.strings([fields.dig(v, "version") for v in fields.mappings(group.get("versions"))])


def _groups(groups: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, APIGroup) of every named group of an APIGroupList."""
    found = [(g.get("name"), g) for g in fields.mappings(groups.get("groups"))]
    return [(name, group) for name, group in found if isinstance(name, str) and name]


def served_group_versions(*, core: Mapping[str, Any], groups: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(group, version) of every served version: the core ones (group ``""``) and every group's."""
    pairs = _core_versions(core)
    for name, group in _groups(groups):
        pairs.extend((name, v) for v in _group_versions(group))
    return pairs


def preferred_group_versions(*, core: Mapping[str, Any], groups: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(group, version) pairs to read: every core version (``""``) and each group's preferred version."""
    pairs = _core_versions(core)
    for name, group in _groups(groups):
        preferred = (
            fields.strings([fields.dig(group, "preferredVersion", "version")]) or _group_versions(group)[:1]
        )
        pairs.extend((name, v) for v in preferred)
    return pairs


def parse_resource_list(*, group: str, version: str, document: Mapping[str, Any]) -> list[ApiResource]:
    """The top-level resources of one APIResourceList (subresources such as ``pods/status`` left out)."""
    found: list[ApiResource] = []
    for entry in fields.mappings(document.get("resources")):
        name = entry.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            continue
        found.append(
            ApiResource(
                group=group,
                version=version,
                name=name,
                kind=str(entry.get("kind") or ""),
                namespaced=bool(entry.get("namespaced")),
                verbs=frozenset(fields.strings(entry.get("verbs"))),
                storage_version_hash=str(entry.get("storageVersionHash") or ""),
            )
        )
    return found


def aggregated_group_versions(apiservices: Iterable[Mapping[str, Any]]) -> frozenset[tuple[str, str]]:
    """(group, version) of every APIService served by another apiserver (``spec.service`` set)."""
    return frozenset(
        (str(spec.get("group") or ""), str(spec.get("version") or ""))
        for spec in (fields.mapping(svc.get("spec")) for svc in apiservices)
        if spec.get("service")
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Discovery:
    """What the apiserver serves, from one round of discovery."""

    resources: tuple[ApiResource, ...]  # every served version of every resource
    preferred: frozenset[tuple[str, str]]  # (group, version) pairs that are their group's preferred version
    failed: frozenset[tuple[str, str]] = frozenset()  # (group, version) pairs whose discovery failed

    def lookup(self, *, api_version: str, kind: str) -> ApiResource | None:
        for item in self.resources:
            if item.resource.api_version == api_version and item.kind == kind:
                return item
        return None

    def at_preferred_versions(self) -> tuple[ApiResource, ...]:
        return tuple(item for item in self.resources if (item.group, item.version) in self.preferred)

    def listable(self) -> tuple[ApiResource, ...]:
        """One version per group and kind (the preferred one when served there) that can be listed and
        deleted: enough to find every object once."""
        chosen: dict[tuple[str, str], ApiResource] = {}
        for item in self.resources:
            if not {"list", "delete"} <= item.verbs:
                continue
            key = (item.group, item.kind)
            if key not in chosen or (
                (item.group, item.version) in self.preferred
                and (chosen[key].group, chosen[key].version) not in self.preferred
            ):
                chosen[key] = item
        return tuple(chosen.values())


async def discover(kube: Kube) -> Discovery:
    """Every resource (no subresources) of every served group version, not only the preferred ones (a
    bundle may name any served version). A group version whose server is missing or down (an aggregated
    API: 404, 5xx) is skipped with a warning and listed in ``failed``: it is not ours to migrate, and a
    bundle naming it is tried again later rather than called invalid."""
    core, groups = await asyncio.gather(kube.get("/api"), kube.get("/apis"))
    group_versions = served_group_versions(core=core, groups=groups)

    async def one(group: str, version: str) -> list[ApiResource] | None:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            document = await kube.get(path)
        except Exception as error:
            if retry.classify(error) not in ("not_found", "server_error"):
                raise
            log.warning("discovery of %s failed: %s", path, retry.describe(error))
            return None
        return parse_resource_list(group=group, version=version, document=document)

    results = await asyncio.gather(*(one(group, version) for group, version in group_versions))
    return Discovery(
        resources=tuple(item for found in results if found for item in found),
        preferred=frozenset(preferred_group_versions(core=core, groups=groups)),
        failed=frozenset(pair for pair, found in zip(group_versions, results, strict=True) if found is None),
    )


async def aggregated(kube: Kube) -> frozenset[tuple[str, str]]:
    """The group versions served by an aggregated apiserver (from the APIServices)."""
    return aggregated_group_versions(await kube.list_items(resources.APISERVICES.path()))
