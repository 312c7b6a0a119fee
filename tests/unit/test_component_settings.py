"""Reading what a cluster configures: command lines, ClusterConfiguration, kubelet and kube-proxy configs.
All of it is untrusted: readers never raise and say what they could not read."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.upgrade_readiness.checks import component_settings as cs


def test_command_line_flags_in_every_spelling() -> None:
    flags, problem = cs.parse_args(
        ["kube-apiserver", "--a=1", "--b", "2", "--profiling", "-v=2", "--c=", "--d", "--", "--after"]
    )
    assert flags == (("a", "1"), ("b", "2"), ("profiling", None), ("v", "2"), ("c", ""), ("d", None))
    assert problem == ""


def test_command_line_problems_are_said() -> None:
    flags, problem = cs.parse_args(["kube-apiserver", 7, "--ok=1", "--=x", "---"])
    assert flags == (("ok", "1"),)
    assert "argument 2 is not a string" in problem
    assert "is not a flag" in problem


def test_a_command_line_is_read_up_to_its_bound() -> None:
    flags, problem = cs.parse_args(["x", *[f"--f{i}=1" for i in range(cs.MAX_ARGS + 10)]])
    assert len(flags) == cs.MAX_ARGS - 1
    assert f"only the first {cs.MAX_ARGS}" in problem


@pytest.mark.parametrize(
    ("text", "gates", "problem"),
    [
        ("SidecarContainers=true", (("SidecarContainers", True),), ""),
        (" A=true, B=False ,C=0,", (("A", True), ("B", False), ("C", False)), ""),
        ("A=yes,B", (), "is not gate=true|false"),
        ("", (), ""),
    ],
)
def test_feature_gates_as_the_flag_spells_them(
    text: str, gates: tuple[tuple[str, bool], ...], problem: str
) -> None:
    parsed, said = cs.parse_gates(text)
    assert parsed == gates
    assert problem in said


def mirror_pod(
    command: list[Any], *, args: list[Any] | None = None, name: str = "kube-apiserver"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{name}-cp1",
            "namespace": "kube-system",
            "annotations": {cs.MIRROR_ANNOTATION: "0123"},
        },
        "spec": {"nodeName": "cp1", "containers": [{"name": name, "command": command, "args": args or []}]},
    }


def test_a_mirror_pod_names_component_node_flags_and_gates() -> None:
    pod = mirror_pod(
        ["kube-apiserver", "--feature-gates=SidecarContainers=true,Foo=false", "--secure-port=6443"]
    )
    (settings_,) = cs.mirror_pod_settings(pod)
    assert settings_.component == "kube-apiserver"
    assert settings_.node == "cp1"
    assert settings_.source == "static pod kube-system/kube-apiserver-cp1"
    assert settings_.flags == ("feature-gates", "secure-port")
    assert settings_.gates == (("SidecarContainers", True), ("Foo", False))
    assert settings_.where == "kube-apiserver on cp1 (static pod kube-system/kube-apiserver-cp1)"


def test_a_component_is_known_by_its_command_when_the_container_has_another_name() -> None:
    pod = mirror_pod(["/usr/local/bin/kube-scheduler"], args=["--leader-elect=true"], name="scheduler")
    (settings_,) = cs.mirror_pod_settings(pod)
    assert (settings_.component, settings_.flags) == ("kube-scheduler", ("leader-elect",))


def test_pods_that_are_no_mirror_pods_and_other_containers_are_left_out() -> None:
    pod = mirror_pod(["kube-apiserver"])
    del pod["metadata"]["annotations"]
    assert cs.mirror_pod_settings(pod) == ()
    assert cs.mirror_pod_settings(mirror_pod(["etcd", "--data-dir=/x"], name="etcd")) == ()


def test_a_bad_feature_gates_value_is_a_problem_with_the_good_gates_kept() -> None:
    (settings_,) = cs.mirror_pod_settings(mirror_pod(["kube-apiserver", "--feature-gates=A=true,B=maybe"]))
    assert settings_.gates == (("A", True),)
    assert "--feature-gates" in settings_.problem


V1BETA4 = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
apiServer:
  extraArgs:
  - name: feature-gates
    value: SidecarContainers=true
  - name: audit-log-maxage
    value: "30"
controllerManager:
  extraArgs:
  - name: bind-address
    value: 0.0.0.0
scheduler: {}
featureGates:
  ControlPlaneKubeletLocalMode: true
kubernetesVersion: v1.36.3
"""


def test_cluster_configuration_v1beta4_extra_args_are_a_list() -> None:
    config = cs.cluster_configuration(V1BETA4)
    assert config.api_version == "kubeadm.k8s.io/v1beta4"
    assert config.problem == ""
    by_component = {s.component: s for s in config.settings}
    assert by_component["kube-apiserver"].flags == ("feature-gates", "audit-log-maxage")
    assert by_component["kube-apiserver"].gates == (("SidecarContainers", True),)
    assert (
        by_component["kube-apiserver"].source
        == f"{cs.KUBEADM_CONFIG} ClusterConfiguration apiServer.extraArgs"
    )
    assert by_component["kube-controller-manager"].flags == ("bind-address",)
    assert by_component["kube-scheduler"].flags == ()
    assert by_component["kubeadm"].gates == (("ControlPlaneKubeletLocalMode", True),)


def test_cluster_configuration_v1beta3_extra_args_are_a_map() -> None:
    text = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  extraArgs:\n    feature-gates: A=true\n"
    config = cs.cluster_configuration(text)
    assert config.api_version == "kubeadm.k8s.io/v1beta3"
    (apiserver,) = [s for s in config.settings if s.component == "kube-apiserver"]
    assert (apiserver.flags, apiserver.gates) == (("feature-gates",), (("A", True),))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "missing"),
        ("a: [", "not YAML"),
        ("- a\n- b\n", "not a YAML object"),
        ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n", "not ClusterConfiguration"),
        ("x" * (cs.MAX_TEXT + 1), "longer than"),
        ("[" * 5000 + "]" * 5000, "not YAML"),
    ],
)
def test_an_unreadable_cluster_configuration_is_a_problem(text: object, problem: str) -> None:
    config = cs.cluster_configuration(text)
    assert problem in config.problem
    assert config.settings == ()


def test_wrong_shapes_inside_a_cluster_configuration_are_problems() -> None:
    text = "kind: ClusterConfiguration\napiVersion: x\napiServer:\n  extraArgs: 5\nfeatureGates: [1]\n"
    config = cs.cluster_configuration(text)
    problems = " ".join(s.problem for s in config.settings)
    assert "apiServer.extraArgs is neither a map nor a list" in problems
    assert "featureGates is not a map" in problems


def test_kubelet_and_kube_proxy_feature_gates() -> None:
    kubelet = cs.kubelet_settings(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfeatureGates:\n  SidecarContainers: true\n"
    )
    assert (kubelet.component, kubelet.gates, kubelet.problem) == (
        "kubelet",
        (("SidecarContainers", True),),
        "",
    )
    assert kubelet.source == f"{cs.KUBELET_CONFIG} kubelet"
    proxy = cs.kube_proxy_settings("kind: KubeProxyConfiguration\nfeatureGates:\n  A: 'true'\n")
    assert proxy.gates == ()
    assert "is not gate: true|false" in proxy.problem


def test_a_kubelet_configuration_without_gates_sets_none() -> None:
    settings_ = cs.kubelet_settings("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n")
    assert (settings_.gates, settings_.problem) == ((), "")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=30), st.integers(), st.none()), max_size=30))
def test_any_command_line_is_read_without_an_exception(args: list[object]) -> None:
    flags, _ = cs.parse_args(args)
    assert all(isinstance(name, str) and name for name, _value in flags)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_read_as_configuration_without_an_exception(text: str) -> None:
    cs.cluster_configuration(text)
    cs.kubelet_settings(text)
    cs.kube_proxy_settings(text)


_YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["apiVersion", "kind", "apiServer", "controllerManager", "scheduler", "featureGates"]
        ),
        _YAML_VALUES,
    )
)
def test_any_shape_of_a_cluster_configuration_is_read_without_an_exception(document: dict[str, Any]) -> None:
    document["kind"] = "ClusterConfiguration"
    cs.cluster_configuration(yaml.safe_dump(document))


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["metadata", "spec"]), _YAML_VALUES),
    st.dictionaries(st.text(max_size=5), _YAML_VALUES, max_size=3),
)
def test_any_shape_of_a_pod_is_read_without_an_exception(
    pod: dict[str, Any], container: dict[str, Any]
) -> None:
    cs.mirror_pod_settings(pod)
    cs.mirror_pod_settings(
        {"metadata": {"annotations": {cs.MIRROR_ANNOTATION: "x"}}, "spec": {"containers": [container]}}
    )
