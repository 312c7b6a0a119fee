"""``kube-upgrade-controllers`` (and the kubectl plugin ``kubectl upgrade``): one-shot commands for people and
pipelines, and ``run``, which runs the controllers combined in one process (each also has a console script
of its own).

Each one-shot command is one entry of :data:`COMMANDS` (a :class:`command.Command`: its options, its output
formats and an async ``run`` function returning an :class:`output.Outcome`); adding a command is that
function and one entry. The exit codes are one table for all (:mod:`controllers.runtime.exits`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from controllers import registry
from controllers.cli import agreement, command, delta, readiness, status
from controllers.runtime import app, config, exits

COMMANDS: tuple[command.Command, ...] = (readiness.COMMAND, status.COMMAND, agreement.COMMAND, delta.COMMAND)
PROG = "kube-upgrade-controllers"
PLUGIN_PROG = "kubectl upgrade"  # the same commands as a kubectl plugin (the kubectl-upgrade script)

DESCRIPTION = (
    "Five Kubernetes controllers that act once all control-plane nodes (masters) agree on a new version (and "
    "a sixth, verdict-relay, for Cluster API management clusters), and the commands to ask them and the "
    "cluster how an upgrade stands."
)
RUN_HELP = (
    f"Run the named controllers ({', '.join(registry.NAMES)}; default: {', '.join(registry.EVERY_CLUSTER)}) "
    "in one process: one API client "
    "and one metrics/health server (/metrics, /healthz, /readyz, /status, /status/NAME), each controller with "
    "its own agreement, state ConfigMap, Lease and metric prefix. The options below apply to every one of "
    "them; each reads the rest from its environment variables (<CONTROLLER>_...) and its config file "
    "(<CONTROLLER>_CONFIG). The process's own options also come from KUBE_UPGRADE_CONTROLLERS_*."
)


def build_parser(prog: str = PROG) -> command.Parser:
    parser = command.Parser(prog=prog, description=DESCRIPTION, epilog=exits.TABLE)
    config.add_version(parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for each in COMMANDS:
        each.add_to(commands)
    run = commands.add_parser(
        "run",
        add_help=False,  # --help goes on to the options every controller has
        help="run several controllers in one process (default: all of them)",
        description=RUN_HELP,
    )
    run.add_argument("names", nargs="*", metavar="NAME")
    run.set_defaults(command=None, parser=run)
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:  # run
        try:
            chosen = [registry.find(name).controller for name in args.names or registry.EVERY_CLUSTER]
        except KeyError as error:
            args.parser.error(str(error.args[0]))
        return app.main_combined(chosen, rest, prog=args.parser.prog, description=RUN_HELP)
    if rest:
        args.parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return command.execute(args)


def run() -> None:
    sys.exit(main())


def run_plugin() -> None:
    """``kubectl-upgrade``: kubectl runs it for ``kubectl upgrade ...`` when it is on PATH."""
    sys.exit(main(prog=PLUGIN_PROG))
