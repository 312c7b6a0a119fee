"""Configuration: a YAML file (the chart's ConfigMap) + environment + flags, into one typed dataclass.

Each controller declares a frozen dataclass that extends :class:`BaseConfig`; every field becomes
- a flag ``--settle-seconds``,
- an environment variable ``<PREFIX>_SETTLE_SECONDS`` (``NODE_TAINTER_SETTLE_SECONDS``),
- a YAML key ``settleSeconds``.
Precedence: defaults < config file < environment < flags. An unknown key or a bad value is a
:class:`ConfigError` that names it; the entry point turns it into exit code 2 before any API call.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import pathlib
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import yaml

from controllers.agreement import masters, selector
from controllers.runtime import exits

C = TypeVar("C", bound="BaseConfig")


class ConfigError(ValueError):
    """A bad configuration; the message names the key, flag or variable."""


def option(
    default: Any, help: str, *, check: Callable[[Any], str | None] | None = None, separator: str = ","
) -> Any:
    """A config field with its help text and an optional check returning an error message. List fields
    are split on ``separator`` on the command line and in the environment."""
    metadata = {"help": help, "check": check, "separator": separator}
    if isinstance(default, list | tuple):
        value = tuple(default)
        return dataclasses.field(default_factory=lambda: value, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0"


def fraction(value: float) -> str | None:
    return None if 0 <= value <= 1 else "must be between 0 and 1"


def bind_address(value: str) -> str | None:
    if value in ("0", ""):
        return None
    return None if re.fullmatch(r"[^\s:]*:\d{1,5}", value) else "must be HOST:PORT, ':PORT' or '0' (off)"


def cert_dir(value: str) -> str | None:
    missing = [
        name for name in ("tls.crt", "tls.key") if value and not (pathlib.Path(value) / name).is_file()
    ]
    return f"has no {' and no '.join(missing)}" if missing else None


def label_selector(value: str) -> str | None:
    if not value:
        return None
    try:
        selector.parse_selector(value)
    except selector.SelectorError as error:
        return str(error)
    return None


def label_selectors(values: Sequence[str]) -> str | None:
    for value in values:
        problem = label_selector(value) if value else "an empty selector matches nothing"
        if problem:
            return problem
    return None if values else "at least one selector is required"


# client-go's leader elector retries every retryPeriod with up to 20 % jitter on top (wait.JitterUntil).
JITTER_FACTOR = 1.2
MAX_LEASE_DURATION = 2**31 - 1  # leaseDurationSeconds is an int32


def lease_timing_problem(*, lease_duration: float, renew_deadline: float, retry_period: float) -> str:
    """What is wrong with leader election timings, as client-go's ``NewLeaderElector`` refuses them ("" when
    nothing). A leader gives up after renewDeadline without a renewal; only if that comes before any other
    replica may take the Lease (leaseDuration after it last saw a renewal) can two never lead at once."""
    for flag, value in (
        ("--lease-duration-seconds", lease_duration),
        ("--renew-deadline-seconds", renew_deadline),
        ("--retry-period-seconds", retry_period),
    ):
        if not value > 0:
            return f"{flag} {value:g} must be > 0"
    if lease_duration > MAX_LEASE_DURATION:
        return f"--lease-duration-seconds {lease_duration:g} must be at most {MAX_LEASE_DURATION}"
    if not lease_duration > renew_deadline:
        return (
            f"--lease-duration-seconds {lease_duration:g} must be greater than --renew-deadline-seconds "
            f"{renew_deadline:g}: a leader that cannot renew must give up before another replica may take "
            "its Lease"
        )
    if not renew_deadline > retry_period * JITTER_FACTOR:
        return (
            f"--renew-deadline-seconds {renew_deadline:g} must be greater than --retry-period-seconds "
            f"{retry_period:g} x {JITTER_FACTOR} (the retry period with its jitter): the leader must get "
            "at least one more try to renew before it gives up"
        )
    return ""


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """Options every controller has."""

    kubeconfig: str = option("", "Path to a kubeconfig; empty: in-cluster config, else ~/.kube/config.")
    config: str = option("", "Path to a YAML config file (keys in camelCase, e.g. settleSeconds).")
    once: bool = option(False, "Reconcile once against the current agreement (no settle window), then exit.")
    dry_run: bool = option(False, "Decide and report what would change; change nothing.")
    namespace: str = option("kube-system", "Namespace of the state ConfigMap, the leader Lease and Events.")
    release: str = option(
        "kube-upgrade-controllers", "Release name: prefix of the state ConfigMap and Lease."
    )
    master_selectors: tuple[str, ...] = option(
        list(selector.DEFAULT_MASTER_SELECTORS),
        "Label selectors of master Nodes, any of which may match ('|' between them on the command line).",
        check=label_selectors,
        separator="|",
    )
    version_source: Literal["kubelet", "apiserver"] = option(
        "kubelet",
        "Where a master's version comes from: its kubelet, or its kube-apiserver mirror pod's image tag.",
    )
    min_masters: int = option(
        masters.DEFAULT_MIN_MASTERS,
        "Masters that must exist for an agreement (set it to the real count).",
        check=positive,
    )
    require_ready: bool = option(True, "Only Ready masters may agree.")
    settle_seconds: float = option(
        masters.DEFAULT_SETTLE_SECONDS,
        "How long the masters must agree unchanged before acting.",
        check=non_negative,
    )
    metrics_bind_address: str = option(
        ":8080", "Address of /metrics ('0' turns the server off).", check=bind_address
    )
    metrics_secure: bool = option(
        True,
        "Serve /metrics and /status over HTTPS to authorized readers only: a bearer token that a TokenReview "
        "accepts and whose user may get the path (SubjectAccessReview, nonResourceURLs). /healthz and /readyz "
        "stay open. --no-metrics-secure: plain HTTP to anyone who reaches the port.",
    )
    metrics_cert_dir: str = option(
        "",
        "With --metrics-secure: directory of tls.crt and tls.key to serve; empty: a self-signed certificate "
        "made at start.",
        check=cert_dir,
    )
    health_probe_bind_address: str = option(
        ":8081", "Address of /healthz and /readyz (may equal the metrics address).", check=bind_address
    )
    leader_elect: bool = option(False, "Elect a leader through a Lease so that several replicas are safe.")
    lease_duration_seconds: float = option(
        15.0,
        "Leader Lease duration: a standby takes the Lease when it saw no renewal for this long (by its own "
        "clock). Must be greater than the renew deadline.",
        check=positive,
    )
    renew_deadline_seconds: float = option(
        10.0,
        "The leader gives up when it cannot renew for this long. Must be greater than the retry period x 1.2.",
        check=positive,
    )
    retry_period_seconds: float = option(
        2.0, "How often candidates try to take or renew the Lease.", check=positive
    )
    log_format: Literal["json", "text"] = option(
        "json", "Log format: one JSON object per line, or text for humans."
    )
    log_level: Literal["debug", "info", "warning", "error"] = option("info", "Log level.")

    def __post_init__(self) -> None:
        problem = lease_timing_problem(
            lease_duration=self.lease_duration_seconds,
            renew_deadline=self.renew_deadline_seconds,
            retry_period=self.retry_period_seconds,
        )
        if problem:
            raise ConfigError(problem)

    @property
    def master_selector_list(self) -> tuple[selector.Selector, ...]:
        return tuple(selector.parse_selector(text) for text in self.master_selectors)

    @property
    def agreement_rules(self) -> masters.Rules:
        return masters.Rules(
            min_masters=self.min_masters,
            require_ready=self.require_ready,
        )

    @property
    def settle_window(self) -> float:
        """How long an agreement must hold before it is in force (none for ``--once``: it acts on what is)."""
        return 0.0 if self.once else self.settle_seconds


def _yaml_key(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env(prefix: str, name: str) -> str:
    return f"{prefix}_{name.upper()}"


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _convert(field: dataclasses.Field[Any], hint: Any, raw: Any, where: str) -> Any:
    """Turn ``raw`` (YAML value or string) into the field's type; ConfigError names ``where`` on failure."""
    origin = typing.get_origin(hint)
    try:
        if origin is Literal:
            choices = typing.get_args(hint)
            if raw not in choices:
                raise ConfigError(f"{where}: {raw!r} is not one of {', '.join(map(str, choices))}")
            value: Any = raw
        elif hint is bool:
            if isinstance(raw, bool):
                value = raw
            elif isinstance(raw, str) and raw.lower() in _TRUE + _FALSE:
                value = raw.lower() in _TRUE
            else:
                raise ConfigError(f"{where}: {raw!r} is not a boolean (true/false)")
        elif hint is int:
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise ConfigError(f"{where}: {raw!r} is not an integer")
            value = int(raw)
        elif hint is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ConfigError(f"{where}: {raw!r} is not a number")
            value = float(raw)
        elif origin is tuple:
            if isinstance(raw, str):
                items = [item.strip() for item in raw.split(field.metadata["separator"]) if item.strip()]
            elif isinstance(raw, list):
                items = raw
            else:
                raise ConfigError(f"{where}: {raw!r} is not a list")
            if not all(isinstance(item, str) for item in items):
                raise ConfigError(f"{where}: every item must be a string")
            value = tuple(items)
        elif hint is str:
            if not isinstance(raw, str | int | float) or isinstance(raw, bool):
                raise ConfigError(f"{where}: {raw!r} is not a string")
            value = str(raw)
        else:  # pragma: no cover - a programming error in a Config dataclass
            raise TypeError(f"unsupported config type {hint!r} for {field.name}")
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{where}: {raw!r} is not a valid {getattr(hint, '__name__', hint)}") from error
    check = field.metadata.get("check")
    problem = check(value) if check else None
    if problem:
        raise ConfigError(f"{where}: {value!r} {problem}")
    return value


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def build_parser(
    config_type: type[BaseConfig],
    *,
    prog: str,
    prefix: str,
    description: str,
    omit: frozenset[str] = frozenset(),
) -> argparse.ArgumentParser:
    """The argparse parser: every field (but those in ``omit``) a flag, its help naming the environment
    variable and YAML key."""
    hints = typing.get_type_hints(config_type)
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # `uso-runner --version` is not `--version-source`
        epilog=(
            f"Every flag is also read from the environment variable shown ({prefix}_…) and from the YAML\n"
            "config file under its camelCase key. Precedence: flag > environment > file > default.\n\n"
            + exits.TABLE
        ),
    )
    add_version(parser)
    for field in dataclasses.fields(config_type):
        if field.name in omit:
            continue
        hint = hints[field.name]
        default = _default(field)
        help_text = (
            f"{field.metadata.get('help', '')} [env {_env(prefix, field.name)}; file {_yaml_key(field.name)}"
        )
        if hint is bool:
            parser.add_argument(
                _flag(field.name),
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{help_text}; default {str(default).lower()}]",
            )
            continue
        shown = field.metadata["separator"].join(default) if isinstance(default, tuple) else default
        metavar = None
        if typing.get_origin(hint) is Literal:
            metavar = "{" + ",".join(map(str, typing.get_args(hint))) + "}"
        parser.add_argument(
            _flag(field.name), default=None, metavar=metavar, help=f"{help_text}; default {shown!r}]"
        )
    return parser


def flag_settings(config_type: type[BaseConfig], name: str) -> dict[str, Any]:
    """``add_argument`` settings for a command that offers the field ``name`` of ``config_type`` as an option
    of its own: the value converted and checked as the field is everywhere (its type, its check, its
    message), described by the field's help and default, which it keeps when not given."""
    field = next(f for f in dataclasses.fields(config_type) if f.name == name)
    hint = typing.get_type_hints(config_type)[name]
    default = _default(field)
    shown = field.metadata["separator"].join(default) if isinstance(default, tuple) else default
    described = str(field.metadata.get("help", ""))
    if hint is bool:
        return {
            "action": argparse.BooleanOptionalAction,
            "default": default,
            "help": f"{described} (default {str(shown).lower()})",
        }

    def convert(text: str) -> Any:
        try:
            return _convert(field, hint, text, name)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{name}: ")) from error

    settings: dict[str, Any] = {
        "type": convert,
        "default": default,
        "help": described + (f" (default {shown})" if shown else ""),
    }
    if typing.get_origin(hint) is Literal:
        settings["metavar"] = "{" + ",".join(map(str, typing.get_args(hint))) + "}"
    return settings


DISTRIBUTION = "kube-upgrade-controllers"


def version() -> str:
    """The installed distribution's version (the wheel's, the image's, the virtualenv's)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version()}", help="print the version and exit"
    )


def load(
    config_type: type[C],
    argv: Sequence[str],
    *,
    prog: str,
    prefix: str,
    description: str,
    environ: Mapping[str, str] | None = None,
    omit: frozenset[str] = frozenset(),
) -> C:
    """Parse flags, environment and the config file into ``config_type``; the fields in ``omit`` are not
    options here (they keep their defaults). Raises ConfigError."""
    environ = os.environ if environ is None else environ
    parser = build_parser(config_type, prog=prog, prefix=prefix, description=description, omit=omit)
    parser.error = _raise_config_error  # type: ignore[method-assign]
    args = vars(parser.parse_args(list(argv)))
    hints = typing.get_type_hints(config_type)
    fields = {field.name: field for field in dataclasses.fields(config_type) if field.name not in omit}

    config_path = "" if "config" in omit else args.get("config") or environ.get(_env(prefix, "config"), "")
    values: dict[str, Any] = {}
    if config_path:
        by_key = {_yaml_key(name): name for name in fields}
        for key, raw in read_config_file(config_path).items():
            if key not in by_key:
                raise ConfigError(f"{config_path}: unknown key {key!r} (known: {', '.join(sorted(by_key))})")
            name = by_key[key]
            values[name] = _convert(fields[name], hints[name], raw, f"{config_path}: key {key!r}")
    for name, field in fields.items():
        env_name = _env(prefix, name)
        if env_name in environ:
            values[name] = _convert(field, hints[name], environ[env_name], f"environment variable {env_name}")
        if args.get(name) is not None:
            values[name] = _convert(field, hints[name], args[name], f"flag {_flag(name)}")
    values["config"] = config_path
    return config_type(**values)


def read_config_file(path: str) -> dict[str, Any]:
    try:
        text = pathlib.Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"config file {path}: {error.strerror or error}") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path}: not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: must be a mapping of keys to values")
    return data


def _raise_config_error(message: str) -> typing.NoReturn:
    raise ConfigError(message)


def env_prefix(prog: str) -> str:
    """``node-tainter`` → ``NODE_TAINTER``."""
    return prog.upper().replace("-", "_")
