"""What a cluster configures for its components, read from what the API shows (pure; all of it untrusted):

- the command lines of the control-plane static pods, as their mirror pods carry them (per node);
- kubeadm's ClusterConfiguration (ConfigMap kube-system/kubeadm-config, key ClusterConfiguration): its
  apiVersion, the extraArgs of apiServer, controllerManager and scheduler (a name→value map in v1beta3, a
  list of {name, value} from v1beta4 on), and kubeadm's own featureGates;
- the KubeletConfiguration of ConfigMap kube-system/kubelet-config (key kubelet) and the
  KubeProxyConfiguration of ConfigMap kube-system/kube-proxy (key config.conf): their featureGates.

Every reader returns typed :class:`Settings` and never raises: what it cannot read is said in ``problem``.
Texts beyond :data:`MAX_TEXT` characters and command lines beyond :data:`MAX_ARGS` arguments are not read.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import yaml

from controllers.release_delta import model

MAX_TEXT = 1024 * 1024
MAX_ARGS = 4096
Configured = (
    model.Component | Literal["kubeadm"]
)  # kubeadm: ClusterConfiguration.featureGates (its own gates)
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
NAMESPACE = "kube-system"  # where kubeadm keeps its ConfigMaps and the kubelets the static pods' mirror pods
# kubeadm's ConfigMaps, the key of each that holds the configuration.
KUBEADM_CONFIG_MAP, KUBEADM_CONFIG_KEY = "kubeadm-config", "ClusterConfiguration"
KUBELET_CONFIG_MAP, KUBELET_CONFIG_KEY = "kubelet-config", "kubelet"
KUBE_PROXY_CONFIG_MAP, KUBE_PROXY_CONFIG_KEY = "kube-proxy", "config.conf"
KUBEADM_CONFIG = f"ConfigMap {NAMESPACE}/{KUBEADM_CONFIG_MAP}"
KUBELET_CONFIG = f"ConfigMap {NAMESPACE}/{KUBELET_CONFIG_MAP}"
KUBE_PROXY_CONFIG = f"ConfigMap {NAMESPACE}/{KUBE_PROXY_CONFIG_MAP}"
# ClusterConfiguration's sections with extraArgs, and the component each configures.
EXTRA_ARGS: tuple[tuple[str, model.Component], ...] = (
    ("apiServer", "kube-apiserver"),
    ("controllerManager", "kube-controller-manager"),
    ("scheduler", "kube-scheduler"),
)
_FLAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_GATE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# strconv.ParseBool, which the feature-gates flag uses.
_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """What one place sets for one component: the flags (by name, without dashes) and the feature gates."""

    component: Configured
    source: str  # "static pod kube-system/kube-apiserver-cp1", "ConfigMap kube-system/kubelet-config", ...
    node: str = ""  # the node, where the setting is per node
    flags: tuple[str, ...] = ()
    gates: tuple[tuple[str, bool], ...] = ()
    problem: str = ""  # what could not be read ("" when all of it was)

    @property
    def where(self) -> str:
        return (
            f"{self.component} on {self.node} ({self.source})"
            if self.node
            else f"{self.component} ({self.source})"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterConfiguration:
    """The stored ClusterConfiguration: its apiVersion and the settings it carries."""

    api_version: str
    settings: tuple[Settings, ...]
    problem: str = ""


# --- command lines -----------------------------------------------------------------------------------------


def parse_args(args: Sequence[object]) -> tuple[tuple[tuple[str, str | None], ...], str]:
    """The flags of a command line, as (name, value) in order (value None: a flag given alone, such as a
    boolean). ``--name=value``, ``--name value``, ``-n=value``; ``--`` ends the flags; a word that is no
    flag's value is a positional argument (the command itself) and skipped."""
    flags: list[tuple[str, str | None]] = []
    problems = []
    if len(args) > MAX_ARGS:
        problems.append(f"only the first {MAX_ARGS} of {len(args)} arguments were read")
        args = args[:MAX_ARGS]
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not isinstance(word, str):
            problems.append(f"argument {i} is not a string")
            continue
        if word == "--":
            break
        if not word.startswith("-") or word == "-":
            continue
        name, equals, value = word.lstrip("-").partition("=")
        if not _FLAG.match(name):
            problems.append(f"{word[:40]!r} is not a flag")
            continue
        if equals:
            flags.append((name, value))
        elif i < len(args) and isinstance(args[i], str) and not str(args[i]).startswith("-"):
            flags.append((name, str(args[i])))
            i += 1
        else:
            flags.append((name, None))
    return tuple(flags), "; ".join(problems)


def parse_gates(text: str) -> tuple[tuple[tuple[str, bool], ...], str]:
    """``A=true,B=false`` as the --feature-gates flag and kubeadm's extraArgs spell it."""
    gates: list[tuple[str, bool]] = []
    problems: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, equals, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not _GATE.match(name) or value not in _BOOLS:
            problems.append(f"{item[:60]!r} is not gate=true|false")
            continue
        gates.append((name, _BOOLS[value]))
    return tuple(gates), "; ".join(problems)


def _settings_from_flags(
    component: Configured,
    source: str,
    node: str,
    flags: Iterable[tuple[str, str | None]],
    problems: list[str],
) -> Settings:
    names: list[str] = []
    gates: list[tuple[str, bool]] = []
    for name, value in flags:
        names.append(name)
        if name == "feature-gates":
            parsed, problem = parse_gates(value or "")
            gates.extend(parsed)
            if problem:
                problems.append(f"--feature-gates: {problem}")
    return Settings(component, source, node, tuple(names), tuple(gates), "; ".join(p for p in problems if p))


def mirror_pod_settings(pod: Mapping[str, Any]) -> tuple[Settings, ...]:
    """The settings of a control-plane static pod's containers named after a component (kubeadm's), read
    from its mirror pod: the container's command and args. Other pods and containers: ()."""
    meta = _mapping(pod.get("metadata"))
    if MIRROR_ANNOTATION not in _mapping(meta.get("annotations")):
        return ()
    source = f"static pod {meta.get('namespace', '')}/{meta.get('name', '')}"
    node = str(_mapping(pod.get("spec")).get("nodeName") or "")
    out = []
    for container in _list(_mapping(pod.get("spec")).get("containers")):
        container = _mapping(container)
        command = _list(container.get("command"))
        name = container.get("name")
        component = next((c for c in model.COMPONENTS if c == name), None)
        if component is None and command and isinstance(command[0], str):
            component = next((c for c in model.COMPONENTS if command[0].rsplit("/", 1)[-1] == c), None)
        if component is None:
            continue
        flags, problem = parse_args([*command, *_list(container.get("args"))])
        out.append(_settings_from_flags(component, source, node, flags, [problem]))
    return tuple(out)


# --- configuration files -----------------------------------------------------------------------------------


def _load(text: object, *, kind: str) -> tuple[Mapping[str, Any], str]:
    """A YAML document of ``kind`` (bounded, safe loader); ({}, why) when it is not one."""
    if not isinstance(text, str):
        return {}, "missing"
    if len(text) > MAX_TEXT:
        return {}, f"longer than {MAX_TEXT} characters"
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError) as error:
        return {}, f"not YAML: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    if not isinstance(document, Mapping):
        return {}, "not a YAML object"
    if document.get("kind") != kind:
        return document, f"kind is {document.get('kind')!r}, not {kind}"
    return document, ""


def _gate_map(value: object, where: str, problems: list[str]) -> tuple[tuple[str, bool], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        problems.append(f"{where} is not a map")
        return ()
    gates = []
    for name, enabled in value.items():
        if isinstance(name, str) and _GATE.match(name) and isinstance(enabled, bool):
            gates.append((name, enabled))
        else:
            problems.append(f"{where}: {str(name)[:60]!r}: {str(enabled)[:20]!r} is not gate: true|false")
    return tuple(gates)


def component_config_settings(
    text: object, *, component: model.Component, kind: str, source: str
) -> Settings:
    """The featureGates of a component's configuration file (KubeletConfiguration, KubeProxyConfiguration)."""
    document, problem = _load(text, kind=kind)
    problems = [problem] if problem else []
    gates = _gate_map(document.get("featureGates"), "featureGates", problems) if not problem else ()
    return Settings(component, source, gates=gates, problem="; ".join(problems))


def kubelet_settings(text: object) -> Settings:
    return component_config_settings(
        text,
        component="kubelet",
        kind="KubeletConfiguration",
        source=f"{KUBELET_CONFIG} {KUBELET_CONFIG_KEY}",
    )


def kube_proxy_settings(text: object) -> Settings:
    return component_config_settings(
        text,
        component="kube-proxy",
        kind="KubeProxyConfiguration",
        source=f"{KUBE_PROXY_CONFIG} {KUBE_PROXY_CONFIG_KEY}",
    )


def config_map_text(obj: Mapping[str, Any], key: str) -> object:
    """One key of a ConfigMap's data (None when it has none)."""
    return _mapping(obj.get("data")).get(key)


def _extra_args(value: object, where: str, problems: list[str]) -> list[tuple[str, str | None]]:
    """extraArgs: a name→value map (v1beta3) or a list of {name, value} (v1beta4 on)."""
    if value is None:
        return []
    pairs: list[tuple[object, object]]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = [(_mapping(item).get("name"), _mapping(item).get("value")) for item in value[:MAX_ARGS]]
    else:
        problems.append(f"{where} is neither a map nor a list")
        return []
    flags: list[tuple[str, str | None]] = []
    for name, arg in pairs:
        if isinstance(name, str) and _FLAG.match(name):
            flags.append((name, None if arg is None else str(arg)))
        else:
            problems.append(f"{where}: {str(name)[:60]!r} is not a flag name")
    return flags


def cluster_configuration(text: object) -> ClusterConfiguration:
    """kubeadm's stored ClusterConfiguration: apiVersion, the components' extraArgs, kubeadm's featureGates."""
    document, problem = _load(text, kind="ClusterConfiguration")
    api_version = document.get("apiVersion")
    api_version = api_version if isinstance(api_version, str) else ""
    if problem:
        return ClusterConfiguration(api_version, (), problem)
    source = f"{KUBEADM_CONFIG} ClusterConfiguration"
    settings = []
    for section, component in EXTRA_ARGS:
        problems: list[str] = []
        where = f"{section}.extraArgs"
        flags = _extra_args(_mapping(document.get(section)).get("extraArgs"), where, problems)
        settings.append(_settings_from_flags(component, f"{source} {where}", "", flags, problems))
    problems = []
    gates = _gate_map(document.get("featureGates"), "featureGates", problems)
    settings.append(Settings("kubeadm", f"{source} featureGates", gates=gates, problem="; ".join(problems)))
    return ClusterConfiguration(api_version, tuple(settings))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
