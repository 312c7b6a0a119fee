"""blind-alert-rules on the real control plane and a real Prometheus (the project's build): a scrape target
stops exporting a metric when the masters move to the new version, as a component of the new release would;
the watchdog reports the alerting rule that selects it, not the one whose series still exist, nor one that
never had any, nor one written with absent(). Exported again, the rule clears."""

from __future__ import annotations

import contextlib
import pathlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from controllers.kube import client
from controllers.leader_watchdog import controller, effects
from controllers.leader_watchdog.checks import interface
from controllers.runtime import secure
from controllers.structs import refs
from e2e import cluster, controlplane
from tests import alerting, harness

OLD, NEW = "v1.36.3", "v1.37.2"
GONE = 'kuc_blind_test_requests_total{component="scheduler"}'  # the metric the new release no longer exports
KEPT = 'kuc_blind_test_up{component="scheduler"}'
RULES = [
    {
        "name": "blind-test",
        "rules": [
            {"alert": "SchedulerErrors", "expr": "rate(kuc_blind_test_requests_total[1m]) > 100"},
            {"alert": "SchedulerDown", "expr": 'kuc_blind_test_up{component="scheduler"} == 0'},
            {"alert": "NeverExported", "expr": "kuc_blind_test_never_total > 0"},
            {"alert": "SchedulerMetricsAbsent", "expr": "absent(kuc_blind_test_requests_total)"},
        ],
    }
]


def blind(dog: controller.LeaderWatchdog) -> list[str]:
    return sorted(f["object"] for f in dog.status()["findings"] if f["check"] == "blind-alert-rule")


async def test_a_rule_whose_series_vanished_with_the_upgrade_is_reported_blind(
    kube: client.Kube, nodes: cluster.Nodes, tmp_path: pathlib.Path
) -> None:
    samples = {GONE: 7.0, KEPT: 1.0}
    master, worker = "blind-m1", "blind-w1"
    await nodes.create(master, version=OLD, master=True)
    await nodes.create(worker, version=OLD)
    async with (
        alerting.exporter(lambda: (f"{series} {value}" for series, value in samples.items())) as port,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
    ):
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "components", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
        }  # fmt: skip
        with contextlib.ExitStack() as running_prometheus:
            prom = running_prometheus.enter_context(alerting.prometheus(config, RULES, tmp_path))

            async def scraped() -> bool:
                return await alerting.ready(session, prom) and bool(await alerting.query(session, prom, GONE))

            await harness.eventually(scraped, timeout=60, interval=0.5, what="Prometheus scraping the target")
            cfg = controller.LeaderWatchdogConfig(
                settle_seconds=0.0,
                evaluate_interval_seconds=0.2,
                master_selectors=("node-role.kubernetes.io/control-plane",),
                checks=("blind-alert-rules",),
                prometheus_url=prom,
                blind_rules_interval_seconds=1.0,
                blind_rules_window_seconds=600.0,
            )
            async with harness.running(controller.LeaderWatchdog, kube, cfg) as dog:
                await harness.eventually(
                    lambda: dog.status().get("agreedVersion") == OLD,
                    timeout=10,
                    what="agreement on the old version",
                )
                assert (
                    dog.status()["upgradeBegan"] is None and dog.rules_asked is None
                )  # nothing to compare with

                # The master moves; its new components no longer export GONE.
                await nodes.set_status(master, version=NEW)
                await harness.eventually(
                    lambda: dog.status()["upgradeBegan"] is not None, timeout=10, what="the upgrade seen"
                )
                del samples[GONE]
                took = await harness.eventually(
                    lambda: blind(dog) == ["alert rule blind-test/SchedulerErrors"],
                    timeout=30,
                    interval=0.2,
                    what="SchedulerErrors reported blind, and no other rule",
                )
                print(f"\nblind rule reported {took:.1f} s after its metric stopped being exported")
                rounds: dict[str, Any] = dog.status()["alertRules"]
                assert rounds["error"] is None
                assert rounds["lastRound"]["alertingRules"] == 4
                # absent()'s selector is not asked about; the other three are, and two have no series now
                assert rounds["lastRound"]["selectorsAnswered"] == 3
                assert rounds["lastRound"]["selectorsWithoutSeries"] == 2
                finding = next(f for f in dog.status()["findings"] if f["check"] == "blind-alert-rule")
                assert finding["evidence"].startswith(
                    "kuc_blind_test_requests_total: series within 600s before"
                )
                assert metric(dog, "findings", check="blind-alert-rule", severity="warning") == 1
                assert metric(dog, "alert_rules_rounds_total", outcome="ok") >= 1
                assert abs(time.time() - metric(dog, "alert_rules_last_round_timestamp_seconds")) < 30

                # Exported again (the exporter mended, or the rule rewritten): no longer blind.
                samples[GONE] = 8.0
                await harness.eventually(
                    lambda: blind(dog) == [], timeout=30, interval=0.2, what="the rule clears"
                )
                del samples[GONE]
                await harness.eventually(
                    lambda: len(blind(dog)) == 1, timeout=30, interval=0.2, what="blind again"
                )

                # Prometheus gone: the last round's findings stay, and the error is said.
                running_prometheus.close()
                await harness.eventually(
                    lambda: "cannot read the alerting rules" in (dog.status()["alertRules"]["error"] or ""),
                    timeout=30,
                    interval=0.2,
                    what="the failed round said",
                )
                assert blind(dog) == ["alert rule blind-test/SchedulerErrors"]
                assert metric(dog, "alert_rules_rounds_total", outcome="failed") >= 1


def metric(dog: controller.LeaderWatchdog, name: str, **labels: str) -> float:
    value = harness.metric(dog, f"leader_watchdog_{name}", **labels)
    assert value is not None, name
    return value


@contextlib.asynccontextmanager
async def bearer_gate(
    prometheus: str, *, token: str, directory: pathlib.Path
) -> AsyncIterator[tuple[str, str]]:
    """HTTPS in front of ``prometheus`` (a self-signed certificate for localhost) that forwards only requests
    carrying ``token``, as an authenticating proxy in front of a Prometheus does (kube-rbac-proxy, OpenShift's
    oauth-proxy); yields its URL and the certificate's file."""

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"status": "error", "error": "unauthorized"}, status=401)
        async with aiohttp.ClientSession() as session, session.request(
            request.method, f"{prometheus}{request.rel_url}", data=await request.read(),
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        ) as answer:  # fmt: skip
            return web.Response(
                body=await answer.read(), status=answer.status, content_type="application/json"
            )

    certificate, key = secure.self_signed(hosts=("localhost",))
    (directory / "tls.crt").write_bytes(certificate)
    (directory / "tls.key").write_bytes(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    application = web.Application()
    application.router.add_route("*", "/{path:.*}", forward)
    runner = web.AppRunner(application)
    await runner.setup()
    port = controlplane.free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield f"https://localhost:{port}", str(directory / "tls.crt")
    finally:
        await runner.cleanup()


async def test_prometheus_behind_tls_and_a_bearer_token(tmp_path: pathlib.Path) -> None:
    """The client verifies the server with the configured CA and sends the token from its file; without either
    the round fails with the reason (the token never appears in it)."""
    token = "s3cret-token-value"
    (tmp_path / "token").write_text(token + "\n")
    rules = [{"name": "g", "rules": [{"alert": "Down", "expr": "up == 0"}]}]
    with alerting.prometheus({"global": {"evaluation_interval": "1s"}}, rules, tmp_path) as prom:
        async with (
            aiohttp.ClientSession() as session,
            bearer_gate(prom, token=token, directory=tmp_path) as (url, ca_file),
        ):
            await harness.eventually(
                lambda: alerting.ready(session, prom), timeout=60, interval=0.5, what="ready"
            )

            async def round_with(**options: str) -> interface.RulesProbe:
                client = effects.Client(url=url, timeout_seconds=5, **options)
                async with client:
                    return await effects.probe(client, began=time.time() - 60, window_seconds=60,
                                               now=time.time(), ref=refs.ObjectRef(kind="Namespace", name="x"))  # fmt: skip

            found = await round_with(ca_file=ca_file, bearer_token_file=str(tmp_path / "token"))
            assert [rule.name for rule in found.rules] == ["Down"] and found.now == {"up": 0}
            for options, reason in (
                ({"ca_file": ca_file}, "HTTP 401"),
                ({"bearer_token_file": str(tmp_path / "token")}, "certificate verify failed"),
            ):
                with pytest.raises(effects.UNANSWERED) as refused:
                    await round_with(**options)
                assert reason in effects.describe(refused.value) and token not in effects.describe(
                    refused.value
                )


@contextlib.asynccontextmanager
async def hostile(
    answers: dict[str, Callable[[], web.StreamResponse]], asked: list[str]
) -> AsyncIterator[str]:
    """A server that answers ``/api/v1/rules`` and ``/api/v1/query`` as told (a misbehaving or hostile
    Prometheus: a new response each time), recording every query it is sent; yields its URL."""

    async def answer(request: web.Request) -> web.StreamResponse:
        asked.append(
            str((await request.post()).get("query", "")) if request.method == "POST" else request.path_qs
        )
        return answers[request.path]()

    application = web.Application()
    application.router.add_route("*", "/{path:.*}", answer)
    runner = web.AppRunner(application)
    await runner.setup()
    port = controlplane.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def rules_answer(expr: str) -> web.Response:
    group = {"name": "g", "rules": [{"type": "alerting", "name": "A", "query": expr}]}
    return web.json_response({"status": "success", "data": {"groups": [group]}})


def count_answer(value: str) -> web.Response:
    data = {"resultType": "vector", "result": [{"metric": {}, "value": [1, value]}]}
    return web.json_response({"status": "success", "data": data})


async def round_at(url: str) -> interface.RulesProbe:
    client = effects.Client(url=url, timeout_seconds=5)
    async with client:
        return await effects.probe(client, began=time.time() - 60, window_seconds=60, now=time.time(),
                                   ref=refs.ObjectRef(kind="Namespace", name="x"))  # fmt: skip


async def test_only_rebuilt_selectors_are_sent_and_hostile_answers_are_refused() -> None:
    asked: list[str] = []
    text = 'sum(rate(old_total{job="x"} [5m])) > 1 # ") or vector(1) # a comment Prometheus would never send'
    answers: dict[str, Callable[[], web.StreamResponse]] = {
        "/api/v1/rules": lambda: rules_answer(text),
        "/api/v1/query": lambda: count_answer("0"),
    }
    async with hostile(answers, asked) as url:
        found = await round_at(url)
        assert asked == ["/api/v1/rules?type=alert", 'count(old_total{job="x"})',
                         'count(last_over_time(old_total{job="x"}[60s]))']  # fmt: skip
        assert found.now == found.before == {'old_total{job="x"}': 0}

        counts: list[tuple[str, Callable[[], web.StreamResponse], str]] = [
            ("a count that is no whole number", lambda: count_answer("1.5"), "not a whole number"),
            ("a count that is no number", lambda: count_answer("NaN"), "not a whole number"),
        ]
        for name, response, reason in counts:
            answers["/api/v1/query"] = response
            found = await round_at(url)
            assert found.now == {} and reason in found.problems[0], name
        rules: list[tuple[str, Callable[[], web.StreamResponse], str]] = [
            ("a redirect (the token would follow it)",
             lambda: web.Response(status=302, headers={"Location": "http://elsewhere.example/"}), "HTTP 302"),
            ("an answer too large", lambda: web.Response(body=b" " * (effects.MAX_RULES_BYTES + 1)), "larger than"),
            ("no JSON", lambda: web.Response(text="<html>"), "not a JSON object"),
            ("an error", lambda: web.json_response({"status": "error", "error": "bad"}, status=422), "HTTP 422: bad"),
        ]  # fmt: skip
        for name, response, reason in rules:
            answers["/api/v1/rules"] = response
            with pytest.raises(effects.UNANSWERED) as refused:
                await round_at(url)
            assert reason in effects.describe(refused.value), name
