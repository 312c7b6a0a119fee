"""verdict-relay's decisions: the mirror of each namespace, the Runtime Extension's answers (pure), and the
kubeconfig it accepts from a Cluster's Secret (controllers/kube/remote.py: inline credentials only)."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from controllers.kube import remote
from controllers.structs import gate
from controllers.verdict_relay import logic

NOW = 1_780_000_000.0
C1 = logic.ClusterRef("team-a", "c1")
BLOCKED = gate.GateVerdict(
    upgradeable=False,
    target="1.38",
    reasons="kubelet-skew: Node w1",
    acknowledge="kube-upgrade-controllers readiness ack",
)
ACKED = gate.GateVerdict(
    upgradeable=True, target="1.38", acknowledged="ack-1.38-kubelet-skew", expires=NOW + 60
)


def test_the_mirror_holds_each_clusters_verdict_under_its_name_and_says_where_to_acknowledge() -> None:
    c2 = logic.ClusterRef("team-a", "c2")
    c3 = logic.ClusterRef("team-b", "c3")
    mirrors, skipped = logic.mirrors(
        [C1, c2, c3], {C1.key: logic.Reading(BLOCKED), c3.key: logic.Reading(None, "no Secret c3-kubeconfig (yet)")},
        now=NOW,
    )  # fmt: skip
    assert skipped == [] and sorted(mirrors) == ["team-a", "team-b"]
    one = gate.read(mirrors["team-a"], prefix="c1.")
    assert isinstance(one, gate.GateVerdict) and not one.upgradeable and one.target == "1.38"
    assert one.acknowledge.startswith(
        "with the workload cluster's kubeconfig (clusterctl get kubeconfig c1 -n team-a)"
    )
    unread = gate.read(mirrors["team-a"], prefix="c2.")
    assert isinstance(unread, gate.GateVerdict) and unread.target == "" and "not read yet" in unread.reasons
    three = gate.read(mirrors["team-b"], prefix="c3.")
    assert isinstance(three, gate.GateVerdict) and "no Secret c3-kubeconfig" in three.reasons
    assert (
        logic.state_of(None, now=NOW) == "unread"
        and logic.state_of(logic.Reading(BLOCKED), now=NOW) == "blocked"
    )


def test_an_acknowledged_verdict_turns_in_the_mirror_when_it_expires_even_without_a_new_read() -> None:
    before, _ = logic.mirrors([C1], {C1.key: logic.Reading(ACKED)}, now=NOW)
    after, _ = logic.mirrors([C1], {C1.key: logic.Reading(ACKED)}, now=NOW + 60)
    assert before["team-a"]["c1.upgradeable"] == "true" and after["team-a"]["c1.upgradeable"] == "false"
    assert logic.state_of(logic.Reading(ACKED), now=NOW + 60) == "blocked"


def test_a_name_that_cannot_prefix_keys_is_not_mirrored() -> None:
    odd = logic.ClusterRef("team-a", "Odd_Name")
    mirrors, skipped = logic.mirrors([odd], {}, now=NOW)
    assert skipped == ["team-a/Odd_Name"] and mirrors == {"team-a": {}}


# --- the Runtime Extension ----------------------------------------------------------------------------


def request(hook: str = "BeforeClusterUpgrade", **fields: object) -> object:
    body: dict[str, object] = {
        "apiVersion": logic.HOOKS_API_VERSION, "kind": f"{hook}Request",
        "cluster": {"metadata": {"name": "c1", "namespace": "team-a"}},
        "fromKubernetesVersion": "v1.37.2", "toKubernetesVersion": "v1.38.0", **fields,
    }  # fmt: skip
    return body


def answer(
    verdict: gate.GateVerdict | str, *, hook: str = "BeforeClusterUpgrade", **fields: object
) -> tuple[str, dict]:  # type: ignore[type-arg]
    parsed = logic.hook_request(hook, request(hook, **fields))
    assert isinstance(parsed, logic.HookRequest)
    return logic.hook_answer(parsed, verdict, now=NOW, retry_after_seconds=30)


def test_discovery_lists_both_hooks_failing_closed() -> None:
    found = logic.discovery(timeout_seconds=10)
    assert found["kind"] == "DiscoveryResponse" and found["status"] == "Success"
    assert [(h["name"], h["requestHook"]["hook"], h["failurePolicy"]) for h in found["handlers"]] == [
        ("before-cluster-upgrade", "BeforeClusterUpgrade", "Fail"),
        ("before-control-plane-upgrade", "BeforeControlPlaneUpgrade", "Fail"),
    ]


def test_a_blocked_verdict_holds_the_upgrade_with_the_reasons_and_an_upgradeable_one_lets_it_proceed() -> (
    None
):
    held, response = answer(BLOCKED)
    assert held == "hold" and response["status"] == "Success" and response["retryAfterSeconds"] == 30
    assert response["kind"] == "BeforeClusterUpgradeResponse"
    assert "not upgradeable to 1.38: kubelet-skew: Node w1" in response["message"]
    assert "readiness ack" in response["message"]
    went, response = answer(ACKED)
    assert went == "proceed" and response["retryAfterSeconds"] == 0


def test_an_expired_ack_holds_again_and_so_does_no_verdict() -> None:
    parsed = logic.hook_request("BeforeControlPlaneUpgrade", request("BeforeControlPlaneUpgrade"))
    assert isinstance(parsed, logic.HookRequest)
    held, response = logic.hook_answer(parsed, ACKED, now=NOW + 61, retry_after_seconds=5)
    assert held == "hold" and "its acknowledgement expired" in response["message"]
    unread, response = answer("no ConfigMap team-a/x")
    assert (
        unread == "hold"
        and "no verdict of the upgrade gate" in response["message"]
        and "no ConfigMap" in response["message"]
    )


def test_a_patch_or_the_minor_below_the_target_proceeds_and_the_minor_after_it_is_held() -> None:
    assert answer(BLOCKED, toKubernetesVersion="v1.37.5")[0] == "proceed"
    assert answer(ACKED, toKubernetesVersion="v1.39.0")[0] == "hold"
    # BeforeClusterUpgrade judges the first step of a chained plan (1.38), not its end (1.39).
    assert (
        answer(
            ACKED,
            toKubernetesVersion="v1.39.0",
            controlPlaneUpgrades=[{"version": "v1.38.1"}, {"version": "v1.39.0"}],
        )[0]
        == "proceed"
    )


@pytest.mark.parametrize(
    "body",
    [None, [], {"cluster": {}}, {"cluster": {"metadata": {"name": "c1", "namespace": "a"}}},
     {"cluster": {"metadata": {"name": "c1", "namespace": "a"}}, "fromKubernetesVersion": 1, "toKubernetesVersion": "v1"}],
)  # fmt: skip
def test_a_request_that_cannot_be_read_is_a_failure_not_a_guess(body: object) -> None:
    problem = logic.hook_request("BeforeClusterUpgrade", body)
    assert isinstance(problem, str)
    assert logic.hook_failure("BeforeClusterUpgrade", problem)["status"] == "Failure"


# --- the kubeconfig of a Cluster's Secret ----------------------------------------------------------------

CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()


def kubeconfig(*, cluster: dict[str, object] | None = None, user: dict[str, object] | None = None) -> bytes:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": cluster if cluster is not None else
                      {"server": "https://10.0.0.1:6443", "certificate-authority-data": CA}}],
        "users": [{"name": "u", "user": user if user is not None else {"token": "s3cr3t-token"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
    }).encode()  # fmt: skip


def test_an_inline_kubeconfig_is_taken() -> None:
    inline = remote.parse(kubeconfig())
    assert inline.server == "https://10.0.0.1:6443" and inline.token == "s3cr3t-token"
    assert "s3cr3t" not in repr(inline)
    cert = base64.b64encode(b"cert").decode()
    pair = remote.parse(kubeconfig(user={"client-certificate-data": cert, "client-key-data": cert}))
    assert pair.cert == b"cert" and pair.key == b"cert" and not pair.token


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (kubeconfig(user={"exec": {"command": "touch", "args": ["/tmp/pwned"]}}), "its user uses exec"),
        (kubeconfig(user={"auth-provider": {"name": "oidc"}}), "its user uses auth-provider"),
        (kubeconfig(user={"client-certificate": "/etc/ssl/key.pem", "client-key": "/etc/x"}), "client-certificate"),
        (kubeconfig(user={"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}), "tokenFile"),
        (kubeconfig(cluster={"server": "https://x", "certificate-authority": "/etc/ca"}), "certificate-authority"),
        (kubeconfig(cluster={"server": "https://x", "insecure-skip-tls-verify": True}), "insecure-skip-tls-verify"),
        (kubeconfig(cluster={"server": "https://x", "proxy-url": "http://evil", "certificate-authority-data": CA}), "proxy-url"),
        (kubeconfig(cluster={"server": "http://10.0.0.1", "certificate-authority-data": CA}), "not an https:// URL"),
        (kubeconfig(cluster={"server": "https://x"}), "no certificate-authority-data"),
        (kubeconfig(user={}), "neither a client certificate nor a token"),
        (kubeconfig(user={"client-certificate-data": CA}), "without its key"),
        (kubeconfig(user={"token": "x", "client-key-data": "not base64!"}), "client-key-data is not base64"),
        (b"- a list", "no mapping"),
        (b"{{{{", "not YAML"),
        (b"x: " + b"y" * remote.MAX_KUBECONFIG_BYTES, "larger than"),
        (json.dumps({"current-context": "nope", "contexts": []}).encode(), "names a context it does not hold"),
    ],
)  # fmt: skip
def test_anything_but_inline_credentials_is_refused_without_quoting_it(text: bytes, problem: str) -> None:
    with pytest.raises(remote.RemoteConfigError) as refused:
        remote.parse(text)
    assert problem in str(refused.value)
    for secret in ("s3cr3t", "/tmp/pwned", "evil", "/etc/ssl"):
        assert secret not in str(refused.value)
