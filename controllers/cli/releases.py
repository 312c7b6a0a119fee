"""Where a release of the chart put upgrade-readiness's acknowledgements: found from the release's own
objects (its upgrade-readiness config ConfigMap), or named as the chart names them for ``--release`` and
``-n``, as its NOTES print them. ``readiness`` judges with them and says which it used."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from controllers.cli import command
from controllers.kube import client, resources, state
from controllers.runtime import config
from controllers.upgrade_readiness import controller as readiness

CHART = "kube-upgrade-controllers"  # the chart's name: its objects' names end so unless the release has it
CONFIG_KEY = "config.yaml"  # the key of a controller's config ConfigMap (a state ConfigMap has other keys)
INSTANCE_LABEL = "app.kubernetes.io/instance"  # the Helm release
DEFAULTS = config.BaseConfig()


@dataclasses.dataclass(frozen=True, slots=True)
class ChartRelease:
    """A release of the chart, as its upgrade-readiness config ConfigMap shows it."""

    name: str  # the Helm release
    namespace: str  # where upgrade-readiness keeps its state and reads its acknowledgements
    prefix: str  # its objects' prefix (the controller's --release)
    acknowledgements: str  # the name of its acknowledgements ConfigMap


@dataclasses.dataclass(frozen=True, slots=True)
class Acknowledgements:
    """The acknowledgements ConfigMap ``readiness`` uses, and how it was found."""

    namespace: str
    name: str
    prefix: str  # the release's objects' prefix
    found_by: str
    exists: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "foundBy": self.found_by,
            "exists": self.exists,
        }

    def line(self) -> str:
        presence = "" if self.exists else "; it does not exist: nothing is acknowledged"
        return f"acknowledgements: ConfigMap {self.namespace}/{self.name} ({self.found_by}{presence})"


def release_of(obj: Mapping[str, Any]) -> ChartRelease | None:
    """The release a ConfigMap labelled as upgrade-readiness's belongs to, from its config file; None for
    anything else (a state ConfigMap, a config that is not a mapping). The values are the cluster's:
    only strings are taken."""
    meta = obj.get("metadata") or {}
    data = obj.get("data") or {}
    text = data.get(CONFIG_KEY) if isinstance(data, Mapping) else None
    if not isinstance(meta, Mapping) or not isinstance(text, str):
        return None
    try:
        settings = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(settings, Mapping):
        return None

    def text_of(key: str, default: str) -> str:
        value = settings.get(key)
        return value if isinstance(value, str) and value else default

    prefix = text_of("release", DEFAULTS.release)
    labels = meta.get("labels") or {}
    name = labels.get(INSTANCE_LABEL) if isinstance(labels, Mapping) else None
    return ChartRelease(
        name=name if isinstance(name, str) and name else prefix,
        namespace=text_of("namespace", str(meta.get("namespace") or DEFAULTS.namespace)),
        prefix=prefix,
        acknowledgements=text_of("acknowledgementsConfigMap", acknowledgements_name(prefix)),
    )


def acknowledgements_name(prefix: str) -> str:
    return readiness.UpgradeReadinessConfig(release=prefix).acknowledgements_name


def chart_prefix(release: str) -> str:
    """The chart's prefix of a release's objects (its ``kuc.fullname`` without overrides)."""
    full = release if CHART in release else f"{release}-{CHART}"
    return full[:40].rstrip("-")


def choose(found: Sequence[ChartRelease], *, release: str | None) -> ChartRelease | None:
    """The one release meant: named by ``release`` (its Helm name or its prefix), or the only one found.
    Several: a UsageError naming them."""
    matching = [r for r in found if release is None or release in (r.name, r.prefix)]
    if len(matching) > 1:
        named = ", ".join(sorted(f"{r.name} in {r.namespace}" for r in matching))
        raise command.UsageError(f"several releases of the chart ({named}): choose one with --release and -n")
    return matching[0] if matching else None


async def find(
    kube: client.Kube, *, namespace: str | None, release: str | None, name: str | None
) -> Acknowledgements:
    """The acknowledgements ConfigMap for the release meant by ``-n``/``--release`` (``name``: the
    ``--acknowledgements-config-map`` given), and whether it exists."""
    # The release may be named by its Helm name or by its prefix: matched in choose(), not by the selector.
    selector = f"{state.PART_OF_LABEL}={state.PART_OF},{state.CONTROLLER_LABEL}={readiness.NAME}"
    where = f"namespace {namespace}" if namespace else "any namespace"
    try:
        items = await kube.list_items(
            resources.CONFIGMAPS.path(namespace=namespace), query={"labelSelector": selector}
        )
    except client.ApiError as error:
        # Someone who may only patch the acknowledgements (the chart's acknowledgers Role) may not list
        # ConfigMaps: with the release and namespace named, the chart's name for them is enough.
        if error.status != 403 or not (release and namespace):
            raise
        items, where = [], f"namespace {namespace} (listing its ConfigMaps is forbidden)"
    chosen = choose([r for r in map(release_of, items) if r is not None], release=release)
    named = "; name from --acknowledgements-config-map" if name else ""
    if chosen is not None:
        found = Acknowledgements(
            namespace=chosen.namespace,
            name=name or chosen.acknowledgements,
            prefix=chosen.prefix,
            found_by=f"release {chosen.name}{named}",
        )
    elif release:
        prefix = chart_prefix(release)
        found = Acknowledgements(
            namespace=namespace or DEFAULTS.namespace,
            name=name or acknowledgements_name(prefix),
            prefix=prefix,
            found_by=f"no upgrade-readiness of release {release} in {where}: the chart's name for it{named}",
        )
    else:
        found = Acknowledgements(
            namespace=namespace or DEFAULTS.namespace,
            name=name or acknowledgements_name(DEFAULTS.release),
            prefix=DEFAULTS.release,
            found_by=f"no release of the chart in {where}: the controller's default{named}",
        )
    return dataclasses.replace(found, exists=await _exists(kube, namespace=found.namespace, name=found.name))


async def _exists(kube: client.Kube, *, namespace: str, name: str) -> bool:
    try:
        await kube.get(resources.CONFIGMAPS.path(namespace=namespace, name=name))
    except client.ApiError as error:
        if error.not_found:
            return False
        raise
    return True
