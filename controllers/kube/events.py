"""Kubernetes Events (events.k8s.io/v1) on the objects a controller acts on. Never fails the caller."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
from typing import Literal

from controllers.kube import resources
from controllers.kube.client import JSON, ApiError, Kube
from controllers.structs import refs, times

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]


@dataclasses.dataclass
class Recorder:
    """Records Events as ``kube-upgrade-controllers/<controller>``; does nothing when ``enabled`` is False
    (dry-run). Cluster-scoped objects get their Events in ``default``, as the kubelet does for Nodes."""

    kube: Kube
    controller: str
    enabled: bool = True
    instance: str = dataclasses.field(
        default_factory=lambda: os.environ.get("POD_NAME") or socket.gethostname()
    )

    async def emit(
        self, ref: refs.ObjectRef, *, reason: str, note: str, type: EventType = "Normal", action: str
    ) -> None:
        if not self.enabled:
            return
        namespace = ref.namespace or "default"
        regarding: JSON = {"kind": ref.kind, "name": ref.name, "apiVersion": ref.api_version}
        if ref.namespace:
            regarding["namespace"] = ref.namespace
        if ref.uid:
            regarding["uid"] = ref.uid
        body: JSON = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{ref.name}.{secrets.token_hex(8)}", "namespace": namespace},
            "eventTime": times.micro_time(),
            "reportingController": f"kube-upgrade-controllers.io/{self.controller}",
            "reportingInstance": self.instance[:128],
            "action": action[:128],
            "reason": reason[:128],
            "note": note[:1024],
            "type": type,
            "regarding": regarding,
        }
        try:
            await self.kube.create(resources.EVENTS.path(namespace=namespace), body)
        except ApiError as error:
            log.warning("could not record event %s on %s/%s: %s", reason, ref.kind, ref.name, error)
