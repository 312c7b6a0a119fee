"""The release delta's source reader (hack/release_delta/scan, Go) on a small tree shaped like Kubernetes':
what it counts as a component's flags, gates and metrics, and what it leaves out. Needs Go, as the fixture
build does; reads only the tree (-source), downloads nothing."""

from __future__ import annotations

import json
import pathlib
import subprocess
import textwrap
from typing import Any

import pytest

from hack.release_delta import __main__ as generator

COMPONENT_BASE = {
    "metrics/opts.go": """
        package metrics
        type StabilityLevel string
        const (
            ALPHA StabilityLevel = "ALPHA"
            STABLE StabilityLevel = "STABLE"
        )
        type CounterOpts struct {
            Namespace, Subsystem, Name, Help, DeprecatedVersion string
            StabilityLevel StabilityLevel
        }
        type HistogramOpts CounterOpts
        type Counter struct{}
        func (c *Counter) Inc() {}
        func NewCounter(o *CounterOpts) *Counter { return &Counter{} }
        func NewHistogram(o *HistogramOpts) *Counter { return &Counter{} }
    """,
    "featuregate/gate.go": """
        package featuregate
        type Feature string
        type prerelease string
        const (
            Alpha = prerelease("ALPHA")
            Beta = prerelease("BETA")
            GA = prerelease("")
            Deprecated = prerelease("DEPRECATED")
        )
        type FeatureSpec struct {
            Default, LockToDefault bool
            PreRelease prerelease
            Version string
        }
        type VersionedSpecs []FeatureSpec
    """,
}

KUBERNETES = {
    "go.mod": """
        module k8s.io/kubernetes

        go 1.24

        replace (
        \tk8s.io/api => ./staging/src/k8s.io/api
        \tk8s.io/component-base => ./staging/src/k8s.io/component-base
        )
    """,
    "cmd/kube-apiserver/apiserver.go": """
        package main
        import "k8s.io/kubernetes/cmd/kube-apiserver/app"
        func main() { app.Run() }
    """,
    "cmd/kube-apiserver/app/server.go": """
        package app

        import (
            "fmt"

            "github.com/spf13/pflag"
            "k8s.io/component-base/metrics"
            _ "k8s.io/kubernetes/pkg/features"
        )

        const auditPrefix = "audit-"

        type Options struct{ Port int }

        type flagger interface{ AddFlags(fs *pflag.FlagSet) }

        // Reached through the interface: Options is named in Run.
        func (o *Options) AddFlags(fs *pflag.FlagSet) {
            fs.IntVar(&o.Port, "secure-port", 6443, "port")
            fs.String(auditPrefix+"log-path", "", "path")
            fs.MarkDeprecated("secure-port", "use the "+"config file")
            addBatch("log", fs)
        }

        func addBatch(plugin string, fs *pflag.FlagSet) {
            fs.String(fmt.Sprintf("audit-%s-mode", plugin), "", "mode")
        }

        // Nothing reaches it: its flag is no flag of the command.
        func unused(fs *pflag.FlagSet) { fs.Bool("never-registered", false, "") }

        type other struct{}

        // A method of the interface's name on a type nothing names: not reached either.
        func (other) AddFlags(fs *pflag.FlagSet) { fs.Bool("other-flag", false, "") }

        var requests = metrics.NewCounter(&metrics.CounterOpts{
            Subsystem: "apiserver", Name: "requests_total", StabilityLevel: metrics.STABLE,
        })

        var orphan = metrics.NewCounter(&metrics.CounterOpts{Name: "orphan_total"})

        func Run() {
            var f flagger = &Options{}
            f.AddFlags(pflag.NewFlagSet("kube-apiserver", pflag.ExitOnError))
            requests.Inc()
        }
    """,
    "pkg/features/kube_features.go": """
        package features

        import "k8s.io/component-base/featuregate"

        const (
            SidecarContainers featuregate.Feature = "SidecarContainers"
            NodeSwap = featuregate.Feature("NodeSwap")
        )

        var gates = map[featuregate.Feature]featuregate.VersionedSpecs{
            SidecarContainers: {
                {Version: version.MustParse("1.28"), Default: false, PreRelease: featuregate.Alpha},
                {Version: version.MustParse("1.33"), Default: true, PreRelease: featuregate.GA, LockToDefault: true},
            },
            NodeSwap: {{Version: version.MajorMinor(1, 22), Default: false, PreRelease: featuregate.Beta}},
        }

        func init() { register(gates) }

        func register(map[featuregate.Feature]featuregate.VersionedSpecs) {}
    """,
    "cmd/kubeadm/app/apis/kubeadm/register.go": 'package kubeadm\nconst GroupName = "kubeadm.k8s.io"\n',
    "cmd/kubeadm/app/apis/kubeadm/v1beta3/register.go": "package v1beta3\nfunc AddToScheme(s any) {}\n",
    "cmd/kubeadm/app/apis/kubeadm/v1beta4/register.go": "package v1beta4\nfunc AddToScheme(s any) {}\n",
    "cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go": """
        package scheme
        import (
            "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta3"
            "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
        )
        func AddToScheme(scheme any) {
            v1beta3.AddToScheme(scheme)
            v1beta4.AddToScheme(scheme)
        }
    """,
    "cmd/kubeadm/app/util/config/common.go": """
        package config
        func validateSupportedVersion() {
            oldKnownAPIVersions := map[string]string{"kubeadm.k8s.io/v1beta2": "v1.22"}
            deprecatedAPIVersions := map[string]struct{}{"kubeadm.k8s.io/v1beta3": {}}
            _, _ = oldKnownAPIVersions, deprecatedAPIVersions
        }
    """,
    "cmd/kubeadm/app/constants/constants.go": """
        package constants
        const (
            DefaultEtcdVersion = "3.6.8-0"
            CoreDNSVersion = "v1.14.2"
            PauseVersion = "3.10.2"
        )
    """,
    "cmd/kubeadm/app/features/features.go": """
        package features
        import "k8s.io/component-base/featuregate"
        const ControlPlaneKubeletLocalMode = "ControlPlaneKubeletLocalMode"
        type Feature struct {
            featuregate.FeatureSpec
            DeprecationMessage string
        }
        type FeatureList map[string]Feature
        var InitFeatureGates = FeatureList{
            ControlPlaneKubeletLocalMode: {FeatureSpec: featuregate.FeatureSpec{Default: true, PreRelease: featuregate.GA, LockToDefault: true}},
        }
    """,
    **{
        f"cmd/{c}/main.go": "package main\nfunc main() {}\n"
        for c in ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
    },
}

API = {
    "core/v1/register.go": 'package v1\nconst GroupName = ""\n',
    "policy/v1beta1/register.go": 'package v1beta1\nconst GroupName = "policy"\n',
    "policy/v1beta1/zz_generated.prerelease-lifecycle.go": """
        package v1beta1
        import schema "k8s.io/apimachinery/pkg/runtime/schema"
        type PodSecurityPolicy struct{}
        type PodSecurityPolicyList struct{}
        func (in *PodSecurityPolicy) APILifecycleIntroduced() (major, minor int) { return 1, 10 }
        func (in *PodSecurityPolicy) APILifecycleRemoved() (major, minor int) { return 1, 25 }
        func (in *PodSecurityPolicy) APILifecycleReplacement() schema.GroupVersionKind {
            return schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Other"}
        }
        func (in *PodSecurityPolicyList) APILifecycleRemoved() (major, minor int) { return 1, 25 }
    """,
}


def write_tree(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("scan")
    kube = write_tree(tmp / "kubernetes", KUBERNETES)
    base = write_tree(
        kube / "staging/src/k8s.io/component-base",
        {"go.mod": "module k8s.io/component-base\n", **COMPONENT_BASE},
    )
    api = write_tree(kube / "staging/src/k8s.io/api", {"go.mod": "module k8s.io/api\n", **API})
    scanner = generator.build_scanner(tmp)
    sources = [f"k8s.io/kubernetes={kube}", f"k8s.io/component-base={base}", f"k8s.io/api={api}"]
    done = subprocess.run(
        [str(scanner), "-version", "v1.99.0", *(arg for s in sources for arg in ("-source", s))],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_flags_are_those_reachable_from_main(facts: dict[str, Any]) -> None:
    flags = {f["name"]: f for f in facts["components"]["kube-apiserver"]["flags"]}
    assert set(flags) == {"secure-port", "audit-log-path", "audit-*-mode"}
    assert flags["secure-port"] == {
        "name": "secure-port",
        "deprecated": True,
        "deprecationMessage": "use the config file",
    }
    assert facts["components"]["kubelet"]["flags"] == []


def test_gates_with_their_versioned_specs_for_every_component_that_links_them(facts: dict[str, Any]) -> None:
    gates = {g["name"]: g for g in facts["gates"]}
    assert gates["SidecarContainers"]["specs"] == [
        {"version": "1.28", "default": False, "preRelease": "Alpha", "lockToDefault": False},
        {"version": "1.33", "default": True, "preRelease": "GA", "lockToDefault": True},
    ]
    assert gates["NodeSwap"]["specs"] == [
        {"version": "1.22", "default": False, "preRelease": "Beta", "lockToDefault": False}
    ]
    assert facts["components"]["kube-apiserver"]["gates"] == ["NodeSwap", "SidecarContainers"]
    assert facts["components"]["kube-proxy"]["gates"] == []  # its main links no gate table


def test_metrics_defined_in_reachable_code(facts: dict[str, Any]) -> None:
    assert facts["metrics"] == [
        {"name": "apiserver_requests_total", "type": "counter", "stability": "STABLE"}
    ]
    assert facts["components"]["kube-apiserver"]["metrics"] == ["apiserver_requests_total"]


def test_api_lifecycle_kinds_without_their_lists(facts: dict[str, Any]) -> None:
    assert facts["apis"] == [
        {"group": "policy", "version": "v1beta1", "kind": "PodSecurityPolicy", "introduced": "1.10",
         "removed": "1.25", "replacement": "policy/v1 Other"}
    ]  # fmt: skip


def test_kubeadm_api_versions_gates_and_defaults(facts: dict[str, Any]) -> None:
    assert facts["kubeadm"] == {
        "apiVersions": [
            {"version": "kubeadm.k8s.io/v1beta3", "status": "deprecated"},
            {"version": "kubeadm.k8s.io/v1beta4", "status": "served"},
        ],
        "gates": [
            {"name": "ControlPlaneKubeletLocalMode",
             "spec": {"version": "", "default": True, "preRelease": "GA", "lockToDefault": True}, "deprecated": False}
        ],
        "defaults": {"coredns": "v1.14.2", "etcd": "3.6.8-0", "pause": "3.10.2"},
    }  # fmt: skip
