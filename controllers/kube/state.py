"""Each controller's state ConfigMap ``<release>-<controller>-state``: what it last finished, where it is.

Written with optimistic concurrency (the resourceVersion read), so two writers never overwrite each other
silently. The common keys (``version``, ``phase``, ``progress``, ``lastError``, ``updatedAt``) are what
``kube-upgrade-controllers status`` shows; a controller may add keys of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from controllers.kube import resources, retry
from controllers.kube.client import JSON, ApiError, Kube
from controllers.structs import times

PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "kube-upgrade-controllers"
CONTROLLER_LABEL = "kube-upgrade-controllers.io/controller"


@dataclasses.dataclass(frozen=True, slots=True)
class State:
    namespace: str
    name: str
    data: Mapping[str, str]
    resource_version: str | None  # None: the ConfigMap does not exist yet
    uid: str | None = None

    def get(self, key: str, default: str = "") -> str:
        return self.data.get(key, default)


def state_name(*, release: str, controller: str) -> str:
    return f"{release}-{controller}-state"


async def read(kube: Kube, *, namespace: str, name: str) -> State:
    try:
        obj = await kube.get(resources.CONFIGMAPS.path(namespace=namespace, name=name))
    except ApiError as error:
        if error.not_found:
            return State(namespace=namespace, name=name, data={}, resource_version=None)
        raise
    return _state(obj)


async def write(kube: Kube, state: State, data: Mapping[str, str], *, controller: str) -> State:
    """Replace the data of ``state`` (create it when missing). Raises ApiError 409 when someone else wrote
    it since ``state`` was read: re-read and decide again."""
    body: JSON = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": state.name,
            "namespace": state.namespace,
            "labels": {PART_OF_LABEL: PART_OF, CONTROLLER_LABEL: controller},
        },
        "data": {**dict(data), "updatedAt": times.micro_time()},
    }
    if state.resource_version is None:
        created = await kube.create(resources.CONFIGMAPS.path(namespace=state.namespace), body)
        return _state(created)
    body["metadata"]["resourceVersion"] = state.resource_version
    replaced = await kube.replace(resources.CONFIGMAPS.path(namespace=state.namespace, name=state.name), body)
    return _state(replaced)


async def update(kube: Kube, state: State, changes: Mapping[str, str], *, controller: str) -> State:
    """Merge ``changes`` into the state, reading it again after a conflict (last writer of a key wins)."""
    current = state

    async def attempt() -> State:
        nonlocal current
        try:
            return await write(kube, current, {**current.data, **changes}, controller=controller)
        except ApiError as error:
            if error.conflict:  # someone wrote it since (or created it, when it was missing)
                current = await read(kube, namespace=state.namespace, name=state.name)
            raise

    return await retry.call(attempt, policy=retry.CONFLICTS)


async def replace_data(
    kube: Kube, *, namespace: str, name: str, data: Mapping[str, str], controller: str
) -> None:
    """Make ``data`` the ConfigMap's whole data (created when missing), unless it holds that already; a
    conflict reads it again. For ConfigMaps that others read as one document (the upgrade gate's verdicts)."""

    async def attempt() -> None:
        current = await read(kube, namespace=namespace, name=name)
        if {k: v for k, v in current.data.items() if k != "updatedAt"} != dict(data):
            await write(kube, current, data, controller=controller)

    await retry.call(attempt, policy=retry.CONFLICTS)


async def list_all(kube: Kube, *, namespace: str | None = None) -> list[State]:
    """Every controller state ConfigMap of the suite (for the status command)."""
    query = {"labelSelector": f"{PART_OF_LABEL}={PART_OF},{CONTROLLER_LABEL}"}
    found = await kube.list_items(resources.CONFIGMAPS.path(namespace=namespace), query=query)
    # The chart's config ConfigMap of a controller has the same labels; only a state's name ends so.
    return [_state(obj) for obj in found if obj["metadata"]["name"].endswith("-state")]


def _state(obj: JSON) -> State:
    meta = obj["metadata"]
    return State(
        namespace=meta["namespace"],
        name=meta["name"],
        data=dict(obj.get("data") or {}),
        resource_version=meta.get("resourceVersion"),
        uid=meta.get("uid"),
    )
