"""node-tainter's options: flags, environment, YAML, and the checks that end in exit code 2."""

from __future__ import annotations

import pathlib

import pytest

from controllers.node_tainter import controller, logic
from controllers.runtime import config


def load(argv: list[str], environ: dict[str, str] | None = None) -> controller.NodeTainterConfig:
    return config.load(
        controller.NodeTainterConfig,
        argv,
        prog="node-tainter",
        prefix="NODE_TAINTER",
        description="",
        environ=environ or {},
    )


def test_defaults() -> None:
    cfg = load([])
    policy = cfg.policy
    assert policy.taint_key == logic.DEFAULT_TAINT_KEY
    assert policy.effect == "PreferNoSchedule"
    assert policy.exclude is None
    assert [s.text for s in policy.master_selectors] == list(cfg.master_selectors)


def test_flags_env_and_file(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("taintKey: example.com/old\nmaxUnschedulableFraction: 0.5\nconcurrency: 4\n")
    cfg = load(
        ["--config", str(file), "--exclude-selector", "pool=gpu,!keep", "--concurrency", "8"],
        {"NODE_TAINTER_TAINT_EFFECT": "NoSchedule"},
    )
    policy = cfg.policy
    assert (policy.taint_key, policy.effect, policy.max_unschedulable_fraction) == (
        "example.com/old",
        "NoSchedule",
        0.5,
    )
    assert cfg.concurrency == 8
    assert policy.exclude is not None and policy.exclude.matches({"pool": "gpu"})
    assert not policy.exclude.matches({"pool": "gpu", "keep": ""})


@pytest.mark.parametrize(
    "argv",
    [
        ["--taint-effect", "NoExecute"],  # would evict pods: not offered
        ["--taint-key", "Not A Key"],
        ["--exclude-selector", "a in (b)"],
        ["--max-unschedulable-fraction", "1.5"],
        ["--concurrency", "0"],
    ],
)
def test_bad_values_are_config_errors(argv: list[str]) -> None:
    with pytest.raises(config.ConfigError):
        load(argv)


def test_every_option_has_help() -> None:
    parser = config.build_parser(
        controller.NodeTainterConfig, prog="node-tainter", prefix="NODE_TAINTER", description=""
    )
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and not action.help.startswith(" ["), action.dest
