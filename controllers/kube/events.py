"""Kubernetes Events (events.k8s.io/v1) on the objects a controller acts on. Never fails the caller.

An Event that meets a connection failure, a timeout, a 5xx or a 429 is tried again a few times with backoff:
a failed connection is never reused, so an Event that first went to an apiserver that is
going away (a removed master stays an endpoint of the ``kubernetes`` Service for a while) lands on a live one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
from typing import Literal

from controllers.kube import resources, retry
from controllers.kube.client import JSON, Kube
from controllers.structs import refs, times

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
# Up to 5 more tries over about 10 s at most: long enough for a removed apiserver's endpoint to go.
RETRY = retry.RetryPolicy(base=0.5, cap=4.0, attempts=5)


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
    policy: retry.RetryPolicy = RETRY

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
            await self.kube.request(
                "POST", resources.EVENTS.path(namespace=namespace), body=body, policy=self.policy
            )
        except Exception as error:
            if retry.classify(error) is None:  # a bug: shown with its traceback, still not the caller's
                log.exception("could not record event %s on %s/%s", reason, ref.kind, ref.name)
            else:
                log.warning(
                    "could not record event %s on %s/%s: %s",
                    reason,
                    ref.kind,
                    ref.name,
                    retry.describe(error),
                )
