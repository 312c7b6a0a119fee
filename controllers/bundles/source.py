"""Where bundles come from: a directory tree ``<root>/<major.minor>/*.yaml`` or ConfigMaps labelled with the
minor; and the variables substituted into them."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Mapping
from typing import Protocol

from controllers.bundles import model
from controllers.kube import resources
from controllers.kube.client import JSON, ApiError, Kube
from controllers.runtime import config, failure
from controllers.structs import redact


class SourceError(failure.TemporaryError, redact.Redacted):
    """The bundle source or the variables ConfigMap cannot be read (not a problem of the bundle itself): tried
    again with backoff."""


class BundleOptions(Protocol):
    """The options of a controller that reads bundles (addon-updater, upgrade-readiness)."""

    @property
    def bundle_source(self) -> str: ...
    @property
    def variables_config_map(self) -> str: ...
    @property
    def bundle_namespace(self) -> str: ...
    @property
    def namespace(self) -> str: ...


def check_namespace(options: BundleOptions) -> None:
    """Config check (ConfigError): bundles and variables from ConfigMaps come from the bundle namespace only,
    never from the release's (where the suite's own ServiceAccounts may create ConfigMaps)."""
    if options.bundle_source != "configmap" and not options.variables_config_map:
        return
    if not options.bundle_namespace:
        raise config.ConfigError(
            "--bundle-namespace is required with ConfigMap bundles or a variables ConfigMap"
        )
    if options.bundle_namespace == options.namespace:
        raise config.ConfigError(
            f"--bundle-namespace must not be --namespace ({options.namespace}): the suite's own ServiceAccounts "
            "may create ConfigMaps there, and no bundle may come from where they can write"
        )


# --- directory tree ----------------------------------------------------------------------------------------


def _directory_minors(root: pathlib.Path) -> list[str]:
    try:
        return [p.name for p in root.iterdir() if p.is_dir() and model.parse_minor(p.name) is not None]
    except OSError as error:
        raise SourceError(f"bundle directory {root}: {error.strerror or error}") from error


def _directory_bundle(root: pathlib.Path, minor: str) -> model.Bundle:
    folder = root / minor
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and model.bundle_file_name(p.name))
        files = tuple(model.BundleFile(name=name, text=(folder / name).read_text()) for name in names)
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(f"bundle {folder}: {redact.describe(error)}") from None
    return model.Bundle(minor=minor, source=f"directory {folder}", files=files)


# --- ConfigMaps --------------------------------------------------------------------------------------------


def _configmap_bundle(configmaps: list[JSON], *, minor: str, namespace: str) -> model.Bundle:
    """All ConfigMaps labelled with ``minor`` make one bundle (a large bundle may be split over several);
    each key ending in .yaml/.yml/.json is a file. A file name used twice is an error."""
    chosen = sorted(
        (
            cm
            for cm in configmaps
            if (cm["metadata"].get("labels") or {}).get(model.CONFIGMAP_MINOR_LABEL) == minor
        ),
        key=lambda cm: str(cm["metadata"]["name"]),
    )
    files: dict[str, model.BundleFile] = {}
    owner: dict[str, str] = {}
    for cm in chosen:
        name = str(cm["metadata"]["name"])
        for key, text in sorted((cm.get("data") or {}).items()):
            if not model.bundle_file_name(key):
                continue
            if key in files:
                raise model.BundleError(
                    "duplicate", f"file {key} is in both ConfigMaps {owner[key]} and {name}"
                )
            files[key] = model.BundleFile(name=key, text=str(text))
            owner[key] = name
    names = ", ".join(str(cm["metadata"]["name"]) for cm in chosen)
    return model.Bundle(minor=minor, source=f"ConfigMap(s) {namespace}/{names}", files=tuple(files.values()))


# --- the source, whichever it is ---------------------------------------------------------------------------


class Source:
    """Lists the minors that have a bundle and loads one of them."""

    def __init__(self, *, kube: Kube, kind: str, directory: str, namespace: str) -> None:
        self.kube = kube
        self.kind = kind
        self.directory = pathlib.Path(directory)
        self.namespace = namespace
        self._configmaps: list[JSON] = []

    async def minors(self) -> list[str]:
        if self.kind == "directory":
            return await asyncio.to_thread(_directory_minors, self.directory)
        try:
            path = resources.CONFIGMAPS.path(namespace=self.namespace)
            self._configmaps = await self.kube.list_items(
                path, query={"labelSelector": model.CONFIGMAP_MINOR_LABEL}
            )
        except ApiError as error:
            said = redact.describe(error, sent={})
            raise SourceError(f"listing bundle ConfigMaps in {self.namespace}: {said}") from None
        labels = (cm["metadata"].get("labels") or {} for cm in self._configmaps)
        return sorted({str(lb[model.CONFIGMAP_MINOR_LABEL]) for lb in labels})

    async def load(self, minor: str) -> model.Bundle:
        """The bundle of ``minor`` (call :meth:`minors` first: ConfigMaps are read once per round)."""
        if self.kind == "directory":
            return await asyncio.to_thread(_directory_bundle, self.directory, minor)
        return _configmap_bundle(self._configmaps, minor=minor, namespace=self.namespace)


async def variables(
    kube: Kube, *, configured: Mapping[str, str], configmap: str, namespace: str
) -> dict[str, str]:
    """The variables: the ConfigMap's keys (when one is configured), overridden by the configured ones."""
    found: dict[str, str] = {}
    if configmap:
        try:
            obj = await kube.get(resources.CONFIGMAPS.path(namespace=namespace, name=configmap))
        except ApiError as error:
            said = redact.describe(error, sent={})
            raise SourceError(f"variables ConfigMap {namespace}/{configmap}: {said}") from None
        found.update({str(k): str(v) for k, v in (obj.get("data") or {}).items()})
    found.update(configured)
    return found
