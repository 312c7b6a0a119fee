"""References to API objects: what an Event is about, and the ``namespace/name`` key of a watch store."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from controllers.structs import fields


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectRef:
    kind: str
    name: str
    namespace: str = ""
    api_version: str = "v1"
    uid: str = ""

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = fields.mapping(obj.get("metadata"))
        return cls(
            kind=str(obj.get("kind", "")),
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace") or ""),
            api_version=str(obj.get("apiVersion", "v1")),
            uid=str(meta.get("uid") or ""),
        )

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])
