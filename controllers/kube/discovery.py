"""API discovery: which resources the apiserver serves, at which preferred version, with which storage hash.

Per group-version discovery documents (``/api/v1``, ``/apis/<group>/<preferred>``) carry
``storageVersionHash`` for every resource the apiserver stores itself; APIServices with ``spec.service`` name
the group-versions served by an aggregated apiserver instead. The parsing functions are pure.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from controllers.kube import resources
from controllers.kube.client import JSON, ApiError, Kube


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


def preferred_group_versions(*, core: Mapping[str, Any], groups: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(group, version) pairs to read: every core version (``""``) and each group's preferred version."""
    pairs = [("", str(v)) for v in core.get("versions") or []]
    for group in groups.get("groups") or []:
        name = str(group.get("name") or "")
        preferred = (group.get("preferredVersion") or {}).get("version")
        if not preferred:
            versions = group.get("versions") or []
            preferred = versions[0].get("version") if versions else None
        if name and preferred:
            pairs.append((name, str(preferred)))
    return pairs


def parse_resource_list(*, group: str, version: str, document: Mapping[str, Any]) -> list[ApiResource]:
    """The top-level resources of one APIResourceList (subresources such as ``pods/status`` left out)."""
    found: list[ApiResource] = []
    for entry in document.get("resources") or []:
        name = str(entry.get("name") or "")
        if not name or "/" in name:
            continue
        found.append(
            ApiResource(
                group=group,
                version=version,
                name=name,
                kind=str(entry.get("kind") or ""),
                namespaced=bool(entry.get("namespaced")),
                verbs=frozenset(str(verb) for verb in entry.get("verbs") or []),
                storage_version_hash=str(entry.get("storageVersionHash") or ""),
            )
        )
    return found


def aggregated_group_versions(apiservices: Iterable[Mapping[str, Any]]) -> frozenset[tuple[str, str]]:
    """(group, version) of every APIService served by another apiserver (``spec.service`` set)."""
    return frozenset(
        (str(spec.get("group") or ""), str(spec.get("version") or ""))
        for spec in (svc.get("spec") or {} for svc in apiservices)
        if spec.get("service")
    )


async def discover(kube: Kube) -> tuple[list[ApiResource], frozenset[tuple[str, str]]]:
    """Every resource of every preferred group-version, and the aggregated group-versions."""
    core, groups = await asyncio.gather(kube.get("/api"), kube.get("/apis"))
    pairs = preferred_group_versions(core=core, groups=groups)

    async def one(group: str, version: str) -> list[ApiResource]:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            document = await kube.get(path)
        except ApiError as error:
            # An aggregated API whose backend is down answers 503: it is not ours to migrate anyway.
            if error.status in (404, 503):
                return []
            raise
        return parse_resource_list(group=group, version=version, document=document)

    lists = await asyncio.gather(*(one(group, version) for group, version in pairs))
    apiservices: list[JSON] = []
    async for page in kube.list_pages(resources.APISERVICES.path()):
        apiservices.extend(page.get("items") or [])
    return [res for found in lists for res in found], aggregated_group_versions(apiservices)
