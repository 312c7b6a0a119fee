"""What every one-shot command shares: its entry in the command table (:class:`Command`), its parser (only
its own options, each listed; the cluster, output and logging options spelled as kubectl spells them), the
cluster it reads, and the one way a failure becomes an exit code and one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import textwrap
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from controllers.cli import output
from controllers.kube import client, retry
from controllers.runtime import config, exits

LOG_LEVELS = ("debug", "info", "warning", "error")
MESSAGE_WIDTH = 400  # an error line stays one readable line
HELP_WIDTH = 100


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32, width=HELP_WIDTH)


class UsageError(Exception):
    """The command cannot do what it was asked as asked (exit 2); the message says what to change."""


class Parser(argparse.ArgumentParser):
    """A parser that takes no abbreviations (``--version`` is never ``--version-source``) and reports a usage
    error as one line, exit 2."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs["formatter_class"] = _formatter  # the epilog (the exit-code table) keeps its lines
        if kwargs.get("description"):
            kwargs["description"] = textwrap.fill(kwargs["description"], HELP_WIDTH)
        super().__init__(**kwargs)
        self.register("action", "parsers", _Subcommands)

    def error(self, message: str) -> NoReturn:
        self.exit(exits.USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if not isinstance(action, _Subcommands) or action.required:  # else _Subcommands says what is wrong
            super()._check_value(action, value)


class _Subcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Optional subcommands of a command (``readiness ack``): a word that names none is an unrecognized
    argument like any other (``readiness --target v1.37``: "unrecognized arguments: --target v1.37", not
    "invalid choice: 'v1.37'"). Required ones (the commands themselves) say "invalid choice"."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        if values[0] in self.choices or self.required:
            super().__call__(parser, namespace, values, option)
            return
        unrecognized = getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, [])
        setattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, [*unrecognized, *values])


@dataclasses.dataclass
class Cluster:
    """The cluster a command reads: connected on first use, closed after the command; it names the apiserver
    and the kubeconfig in error messages."""

    kubeconfig: str | None = None
    context: str | None = None
    kube: client.Kube | None = None

    async def connect(self) -> client.Kube:
        if self.kube is None:
            self.kube = await client.connect(kubeconfig=self.kubeconfig, context=self.context)
        return self.kube

    async def close(self) -> None:
        if self.kube is not None:
            await self.kube.close()

    def describe(self) -> str:
        """``https://10.0.0.1:6443 (kubeconfig ~/.kube/config, context prod)``."""
        try:
            source = client.kubeconfig_source(self.kubeconfig)
        except client.KubeconfigError:
            source = "?"
        where = source if source == client.IN_CLUSTER else f"kubeconfig {source}"
        if self.context:
            where += f", context {self.context}"
        return f"{self.kube.host if self.kube else 'the apiserver'} ({where})"


Handler = Callable[[argparse.Namespace, Cluster], Awaitable[output.Outcome]]


@dataclasses.dataclass(frozen=True, slots=True)
class Option:
    """One option of a command: ``add_argument``'s arguments."""

    flags: tuple[str, ...]
    settings: dict[str, Any]


def option(*flags: str, **settings: Any) -> Option:
    return Option(flags, settings)


def config_option(config_type: type[config.BaseConfig], name: str, *flags: str) -> Option:
    """A controller's config field offered as a command's own option (default: the field's flag),
    converted, checked and described as for the controller; the field's default when not given."""
    settings = {"dest": name, **config.flag_settings(config_type, name)}
    return Option(flags or ("--" + name.replace("_", "-"),), settings)


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    """One entry of the command table: adding a command is this and its ``run`` function.

    ``run`` gets the parsed options and the :class:`Cluster` (connected on first use) and returns an
    :class:`output.Outcome`; it raises to fail (:class:`UsageError`: exit 2; an API or connection failure:
    exit 3, one line naming the apiserver and the kubeconfig)."""

    name: str
    summary: str  # its line in the list of commands
    description: str  # its --help; the exit-code table follows
    run: Handler
    options: tuple[Option, ...] = ()
    outputs: tuple[output.Format, ...] = output.FORMATS  # the -o choices (the first is the default)
    cluster: bool = True  # reads a cluster: --kubeconfig and --context
    namespace: str = ""  # the help of -n/--namespace; "": no such option
    subcommands: tuple[Command, ...] = ()

    def add_to(self, commands: argparse._SubParsersAction[Parser]) -> Parser:
        parser = commands.add_parser(
            self.name, help=self.summary, description=self.description, epilog=exits.TABLE
        )
        mine = parser.add_argument_group(f"{self.name} options")
        for each in self.options:
            mine.add_argument(*each.flags, **each.settings)
        shared = parser.add_argument_group("cluster and output options")
        if self.cluster:
            shared.add_argument(
                "--kubeconfig", metavar="PATH", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, "
                "or the in-cluster config inside a pod)",
            )  # fmt: skip
            shared.add_argument(
                "--context", metavar="NAME", help="kubeconfig context (default: its current one)"
            )
        if self.namespace:
            shared.add_argument("-n", "--namespace", metavar="NAMESPACE", help=self.namespace)
        shared.add_argument(
            "-o", "--output", choices=self.outputs, default=self.outputs[0],
            help=f"output format (default {self.outputs[0]})",
        )  # fmt: skip
        shared.add_argument(
            "--log-level", choices=LOG_LEVELS, default="warning",
            help="log level on stderr; debug also shows the traceback of a failure (default warning)",
        )  # fmt: skip
        config.add_version(parser)
        parser.set_defaults(command=self, parser=parser)
        if self.subcommands:
            children = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
            for child in self.subcommands:
                child.add_to(children)
        return parser


def execute(args: argparse.Namespace) -> int:
    """Run the command ``args`` chose: print its outcome in the format asked for and return its exit code,
    or print one line naming what failed and return 2 or 3."""
    command: Command = args.command
    prog: str = args.parser.prog
    logging.basicConfig(
        level=args.log_level.upper(), format=f"{prog}: %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    cluster = Cluster(kubeconfig=getattr(args, "kubeconfig", None), context=getattr(args, "context", None))

    async def run() -> output.Outcome:
        try:
            return await command.run(args, cluster)
        finally:
            await cluster.close()

    try:
        outcome = asyncio.run(run())
    except Exception as error:
        if args.log_level == "debug":
            traceback.print_exc()
        code, message = failure(error, cluster=cluster)
        print(f"{prog}: {output.clip(message, MESSAGE_WIDTH)}", file=sys.stderr)
        return code
    print(output.render(outcome, args.output))
    return outcome.code


def failure(error: BaseException, *, cluster: Cluster) -> tuple[int, str]:
    """The exit code of ``error`` and the one line that says what failed."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]  # a task group's: the first failure is the one to read
    if isinstance(error, client.KubeconfigError | UsageError):
        return exits.USAGE, str(error)
    where = cluster.describe()
    if isinstance(error, client.ApiError):
        message = str(error.body.get("message") or "")
        if error.status == 401:
            return exits.UNCHECKED, f"{where} refused the credentials: 401 Unauthorized"
        if error.status == 403:
            return exits.UNCHECKED, f"permission missing at {where}: {message or '403 Forbidden'}"
        return exits.UNCHECKED, f"{where} answered {retry.describe(error)}: {message}"
    if retry.classify(error) == "connection":
        detail = str(error) or f"no answer ({type(error).__name__})"
        return exits.UNCHECKED, f"cannot reach {where}: {detail}"
    return exits.UNCHECKED, (
        f"internal error: {type(error).__name__}: {error} (--log-level debug shows the traceback)"
    )
