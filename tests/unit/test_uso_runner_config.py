"""uso-runner's options and metrics: flags, env, file keys, checks; bounded, pre-initialised metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from controllers.runtime import config
from controllers.runtime import metrics as runtime_metrics
from controllers.uso_runner import controller, logic, metrics


def load(argv: list[str], environ: dict[str, str] | None = None) -> controller.UsoRunnerConfig:
    return config.load(
        controller.UsoRunnerConfig,
        argv,
        prog="uso-runner",
        prefix="USO_RUNNER",
        description="",
        environ=environ or {},
    )


def test_defaults() -> None:
    cfg = load([])
    assert cfg.trigger == "minor" and not cfg.all_resources and cfg.resources == ()
    assert cfg.skip_resources == logic.DEFAULT_SKIP
    assert (cfg.workers, cfg.resource_workers, cfg.page_size, cfg.max_retries) == (16, 4, 500, 5)
    assert cfg.method == cfg.migration_method == "rewrite" and not cfg.use_builtin
    assert (cfg.builtin_pickup_seconds, cfg.builtin_timeout_seconds) == (60, 3600)
    # Paced by default, with no fixed rate on top: the pacing decides how fast.
    assert (cfg.latency_budget, cfg.qps) == (1.5, 0)


def test_flags_and_environment() -> None:
    cfg = load(
        ["--trigger=any", "--resources=configmaps,widgets.example.com", "--qps=0"],
        {"USO_RUNNER_ALL_RESOURCES": "true", "USO_RUNNER_WORKERS": "32", "USO_RUNNER_SKIP_RESOURCES": ""},
    )
    assert cfg.trigger == "any" and cfg.all_resources and cfg.workers == 32 and cfg.qps == 0
    assert cfg.resources == ("configmaps", "widgets.example.com") and cfg.skip_resources == ()
    builtin = load(["--method=builtin"], {"USO_RUNNER_BUILTIN_TIMEOUT_SECONDS": "90"})
    assert builtin.migration_method == "builtin" and builtin.builtin_timeout_seconds == 90
    assert load([], {"USO_RUNNER_METHOD": "auto"}).migration_method == "auto"
    assert load(["--latency-budget=0"]).latency_budget == 0  # off: --workers always
    assert load([], {"USO_RUNNER_LATENCY_BUDGET": "1.25"}).latency_budget == 1.25
    # The deprecated flag still works for one release: it means --method=builtin.
    deprecated = load(["--use-builtin"])
    assert deprecated.use_builtin and deprecated.migration_method == "builtin"
    assert load([]).rewrite_fallback
    assert not load(["--method=auto"], {"USO_RUNNER_REWRITE_FALLBACK": "false"}).rewrite_fallback


@pytest.mark.parametrize(
    "argv",
    [
        ["--trigger=patch"],
        ["--method=inplace"],
        ["--use-builtin", "--method=auto"],
        ["--no-rewrite-fallback"],  # the default method is rewrite
        ["--method=rewrite", "--no-rewrite-fallback"],
        ["--builtin-pickup-seconds=0"],
        ["--workers=0"],
        ["--qps=-1"],
        ["--page-size=0"],
        ["--resources=.bad"],
        ["--builtin-timeout-seconds=0"],
        ["--latency-budget=1"],  # writes can never be faster than alone: a budget must be above 1
        ["--latency-budget=0.5"],
        ["--latency-budget=-1"],
    ],
)
def test_bad_values_are_config_errors(argv: list[str]) -> None:
    with pytest.raises(config.ConfigError):
        load(argv)


def test_metrics_are_preinitialised_and_bounded() -> None:
    registry = CollectorRegistry()
    observed = metrics.Metrics(runtime_metrics.Exporter(prefix="uso_runner", registry=registry))
    for reason in metrics.ERROR_REASONS:
        assert registry.get_sample_value("uso_runner_errors_total", {"reason": reason}) == 0
    assert registry.get_sample_value("uso_runner_resources", {"state": "pending"}) == 0
    for i in range(metrics.MAX_RESOURCE_LABELS + 5):
        observed.object_counters(f"r{i}.example.com")["migrated"].inc()
    assert (
        registry.get_sample_value("uso_runner_objects_total", {"resource": "other", "outcome": "migrated"})
        == 5
    )
    observed.observe_run_started()
    assert registry.get_sample_value("uso_runner_run_in_progress") == 1
    for reason in ("over_budget", "hard", "throttled"):
        assert registry.get_sample_value("uso_runner_pacing_backoffs_total", {"reason": reason}) == 0
    observed.observe_pacing(budget=1.5, limit=6, latency=0.012, idle=0.008)
    assert registry.get_sample_value("uso_runner_pacing_concurrency") == 6
    assert registry.get_sample_value("uso_runner_pacing_latency_budget_ratio") == 1.5
    assert registry.get_sample_value("uso_runner_pacing_latency_seconds") == 0.012
    assert registry.get_sample_value("uso_runner_pacing_idle_latency_seconds") == 0.008
    observed.observe_paused(True)
    observed.observe_builtin(running=2)
    assert registry.get_sample_value("uso_runner_run_paused") == 1
    assert registry.get_sample_value("uso_runner_builtin_migrations_running") == 2
    observed.observe_run_finished(duration_seconds=2.5, succeeded=True)
    assert registry.get_sample_value("uso_runner_run_in_progress") == 0
    assert registry.get_sample_value("uso_runner_run_paused") == 0
    assert registry.get_sample_value("uso_runner_run_duration_seconds") == 2.5
    assert (registry.get_sample_value("uso_runner_last_success_timestamp_seconds") or 0) > 0
