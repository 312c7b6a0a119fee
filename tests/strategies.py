"""Hypothesis strategies for Kubernetes-shaped JSON with random holes, shared by the property tests.

Every object strategy draws each field as absent, well-formed, or garbage (None, a bool, a huge or negative
number, NaN, a string, a list, a mapping), at every level: what a buggy client, an old apiserver, a hand-edited
ConfigMap or a broken bundle can hand the decision code. ``PROPERTY`` is the one settings profile: fixed
example count, derandomized and without an example database, so CI runs the same cases every time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = 300
PROPERTY = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

JSON = dict[str, Any]

_SHORT_TEXT = st.text(max_size=12)
# Edge values first: Hypothesis favours the first alternatives of one_of.
_NUMBERS = st.one_of(
    st.sampled_from(
        [0, -1, 2**63, -(2**63), 1e308, -1e308, math.inf, -math.inf, math.nan, "1e999", "NaN", "12"]
    ),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
_SCALARS = st.one_of(st.none(), st.booleans(), _NUMBERS, _SHORT_TEXT)
# Any JSON value, small: what a field may hold instead of what it should.
garbage: st.SearchStrategy[Any] = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_SHORT_TEXT, inner, max_size=3)),
    max_leaves=6,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A well-formed value most of the time, else garbage."""
    return st.one_of(strategy, strategy, garbage)


def holey(fields: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[JSON]:
    """A mapping in which each field is absent, well-formed or garbage."""
    return st.fixed_dictionaries({}, optional={name: maybe(value) for name, value in fields.items()})


def items(strategy: st.SearchStrategy[Any], *, max_size: int = 4) -> st.SearchStrategy[list[Any]]:
    """A list whose entries are mostly ``strategy``, sometimes garbage."""
    return st.lists(maybe(strategy), max_size=max_size)


# --- field values ----------------------------------------------------------------------------------------

names = st.one_of(
    st.sampled_from(["m1", "m2", "m3", "w1", "w2", "kube-scheduler", "kube-controller-manager"]), _SHORT_TEXT
)
version_texts = st.one_of(
    st.builds(
        "v{}.{}.{}{}".format,
        st.integers(0, 2),
        st.integers(0, 40),
        st.integers(0, 12),
        st.sampled_from(["", "-eks-1234abc", "+k3s1", "-rc.1"]),
    ),
    st.sampled_from(["", "v1", "1.36", "v1.36.x", "vv1.2.3", "v99999.1.1", "v1.36.1 junk", "latest"]),
    _SHORT_TEXT,
)
minor_texts = st.one_of(
    st.builds("{}.{}".format, st.integers(0, 2), st.integers(0, 40)), st.sampled_from(["", "1", "x.y"])
)
timestamps = st.one_of(
    st.datetimes().map(lambda moment: moment.isoformat() + "Z"),
    st.sampled_from(
        [
            "2026-11-22T01:52:12.123456Z",
            "2026-11-22T01:52:12Z",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "2026-13-45T99:99:99Z",
            "yesterday",
            "",
        ]
    ),
)
labels = st.one_of(
    st.dictionaries(
        st.sampled_from(
            [
                "node-role.kubernetes.io/control-plane",
                "node-role.kubernetes.io/master",
                "kubernetes.io/hostname",
                "exclude",
            ]
        ),
        st.one_of(names, garbage),
        max_size=3,
    ),
    garbage,
)
conditions = holey(
    {
        "type": st.sampled_from(["Ready", "Established", "Running", "Succeeded", "Failed"]),
        "status": st.sampled_from(["True", "False", "Unknown"]),
        "message": _SHORT_TEXT,
        "reason": _SHORT_TEXT,
    }
)


def metadata(**extra: st.SearchStrategy[Any]) -> st.SearchStrategy[JSON]:
    return holey(
        {
            "name": names,
            "namespace": st.sampled_from(["", "kube-system", "default"]),
            "labels": labels,
            "annotations": labels,
            "uid": _SHORT_TEXT,
            "resourceVersion": st.integers(0, 10**6).map(str),
            "generation": st.integers(-(2**70), 2**70),
            **extra,
        }
    )


# --- objects ---------------------------------------------------------------------------------------------

taints = holey(
    {
        "key": st.sampled_from(["upgrade.kube-upgrade-controllers.io/outdated", "other"]),
        "value": _SHORT_TEXT,
        "effect": st.sampled_from(["PreferNoSchedule", "NoSchedule", "NoExecute"]),
    }
)
nodes = holey(
    {
        "metadata": metadata(),
        "spec": holey({"taints": items(taints), "unschedulable": st.booleans()}),
        "status": holey(
            {
                "nodeInfo": holey({"kubeletVersion": version_texts}),
                "conditions": items(conditions),
                "addresses": items(
                    holey(
                        {
                            "type": st.sampled_from(["InternalIP", "ExternalIP", "Hostname"]),
                            "address": st.sampled_from(["10.0.0.1", "10.0.0.2", "m1", "M2"]),
                        }
                    )
                ),
            }
        ),
    }
)
leases = holey(
    {
        "metadata": metadata(),
        "spec": holey(
            {
                "holderIdentity": st.one_of(names, names.map(lambda n: f"{n}_1234")),
                "renewTime": timestamps,
                "acquireTime": timestamps,
                "leaseDurationSeconds": _NUMBERS,
                "leaseTransitions": _NUMBERS,
            }
        ),
    }
)
pods = holey(
    {
        "metadata": metadata(),
        "spec": holey(
            {
                "nodeName": names,
                "containers": items(
                    holey(
                        {
                            "name": st.sampled_from(["kube-apiserver", "sidecar"]),
                            "image": version_texts.map(lambda v: f"registry:5000/kube-apiserver:{v}"),
                        }
                    )
                ),
            }
        ),
    }
)
endpoint_slices = holey(
    {"endpoints": items(holey({"addresses": items(st.sampled_from(["10.0.0.1", "10.0.0.9"]))}))}
)
_crd_versions = holey({"name": st.sampled_from(["v1", "v1beta1", "v2"]), "storage": st.booleans()})
crds = holey(
    {
        "apiVersion": st.just("apiextensions.k8s.io/v1"),
        "kind": st.just("CustomResourceDefinition"),
        "metadata": metadata(),
        "spec": holey(
            {
                "group": st.sampled_from(["example.com", ""]),
                "names": holey({"kind": st.sampled_from(["Widget", ""]), "plural": st.just("widgets")}),
                "versions": items(_crd_versions),
            }
        ),
        "status": holey(
            {"storedVersions": items(st.sampled_from(["v1", "v1beta1"])), "conditions": items(conditions)}
        ),
    }
)
storage_version_migrations = holey(
    {
        "metadata": metadata(),
        "status": holey({"conditions": items(conditions), "resourceVersion": _SHORT_TEXT}),
    }
)
_replicas = st.integers(-(2**70), 2**70)
workloads = holey(
    {
        "kind": st.sampled_from(["Deployment", "DaemonSet", "ConfigMap"]),
        "metadata": metadata(),
        "spec": holey({"replicas": _replicas}),
        "status": holey(
            dict.fromkeys(
                (
                    "observedGeneration",
                    "replicas",
                    "updatedReplicas",
                    "availableReplicas",
                    "desiredNumberScheduled",
                    "updatedNumberScheduled",
                    "numberAvailable",
                ),
                _replicas,
            )
        ),
    }
)

# --- discovery documents ---------------------------------------------------------------------------------

api_versions = holey({"versions": items(st.sampled_from(["v1", "v2"]))})
_group_version = holey({"groupVersion": st.just("example.com/v1"), "version": st.sampled_from(["v1", "v2"])})
api_group_lists = holey(
    {
        "groups": items(
            holey(
                {
                    "name": st.sampled_from(["apps", "example.com", ""]),
                    "versions": items(_group_version),
                    "preferredVersion": _group_version,
                }
            )
        )
    }
)
api_resource_lists = holey(
    {
        "resources": items(
            holey(
                {
                    "name": st.sampled_from(["pods", "pods/status", "widgets", "", "deployments"]),
                    "kind": st.sampled_from(["Pod", "Widget", "Deployment"]),
                    "namespaced": st.booleans(),
                    "verbs": items(st.sampled_from(["list", "update", "get", "create", "delete"])),
                    "storageVersionHash": _SHORT_TEXT,
                }
            )
        )
    }
)
api_services = holey(
    {
        "spec": holey(
            {
                "group": st.sampled_from(["metrics.k8s.io", ""]),
                "version": st.just("v1beta1"),
                "service": holey({"name": names}),
            }
        )
    }
)

# --- ConfigMap data and bundle documents -----------------------------------------------------------------

json_texts = st.one_of(
    st.sampled_from(["{}", "[]", '{"pods": "abc"}', '["pods"]', "null", "1e999", "{", "[1, {}]", '"x"']),
    _SHORT_TEXT,
)
configmap_data = st.dictionaries(
    st.sampled_from(
        [
            "version",
            "phase",
            "storageHashes",
            "runTarget",
            "runDone",
            "runContinue",
            "bundleMinor",
            "bundleDigest",
            "failedDigest",
        ]
    ),
    st.one_of(version_texts, json_texts, minor_texts),
)
_well_formed_objects = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["v1", "apps/v1", "apiextensions.k8s.io/v1"]),
        "kind": st.sampled_from(
            ["Namespace", "ConfigMap", "Deployment", "DaemonSet", "CustomResourceDefinition"]
        ),
        "metadata": st.fixed_dictionaries(
            {"name": st.sampled_from(["a", "b", "coredns"])},
            optional={"namespace": st.sampled_from(["kube-system", ""]), "labels": st.just({"x": "y"})},
        ),
    },
    optional={"spec": crds.map(lambda crd: crd.get("spec")), "data": garbage},
)
_bundle_objects = st.one_of(
    _well_formed_objects,
    holey(
        {
            "apiVersion": st.sampled_from(["v1", "apps/v1", "apiextensions.k8s.io/v1"]),
            "kind": st.sampled_from(
                ["Namespace", "ConfigMap", "Deployment", "CustomResourceDefinition", "List"]
            ),
            "metadata": metadata(),
            "spec": crds.map(lambda crd: crd.get("spec")),
            "items": st.lists(garbage, max_size=2),
        }
    ),
    garbage,
)


def _yaml(documents: list[Any]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


bundle_texts = st.one_of(
    st.lists(_bundle_objects, max_size=3).map(_yaml),
    st.sampled_from(
        [
            "a: 2001-13-45\n",  # YAML's timestamp tag, not a date
            "a: 2001-02-30 25:61:61\n",
            "- [\n",
            "key: value: other\n",
            "!!python/object:os.system {}\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, annotations: [1]}\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 1}\n",
            "---\n---\n",
            "a: ${UNKNOWN}\n",
            "\t\x00",
        ]
    ),
    st.text(max_size=40),
)
