"""The watch store every controller reads: parsed once, newest version wins, a re-list replaces it all."""

from __future__ import annotations

from controllers.kube import resources, watch


def node(name: str, version: str, *, label: str = "") -> dict[str, object]:
    return {"metadata": {"name": name, "resourceVersion": version, "labels": {"x": label} if label else {}}}


def labels(obj: dict[str, object]) -> str | None:
    """Parses a node to its label value; nodes without one are left out of the store."""
    value = obj["metadata"]["labels"].get("x")  # type: ignore[index]
    return str(value) if value else None


def test_events_update_parsed_items_and_a_sync_replaces_them() -> None:
    store = watch.Store(watch.Stream(resources.NODES), labels)
    assert not store.synced
    store.apply(watch.WatchEvent("SYNC", objects=(node("a", "1", label="old"), node("b", "2"))))
    assert store.synced and store.items == {"a": "old"}  # b parses to None: left out
    store.apply(watch.WatchEvent("MODIFIED", object=node("a", "3", label="new")))
    store.apply(watch.WatchEvent("ADDED", object=node("c", "4", label="c")))
    assert store.items == {"a": "new", "c": "c"}
    store.apply(watch.WatchEvent("MODIFIED", object=node("c", "5")))  # no longer parses: gone
    store.apply(watch.WatchEvent("DELETED", object=node("a", "6", label="new")))
    assert store.items == {}
    store.apply(watch.WatchEvent("SYNC", objects=(node("d", "7", label="d"),)))
    assert store.items == {"d": "d"}


def test_an_older_version_never_replaces_a_newer_one() -> None:
    store = watch.Store(watch.Stream(resources.NODES), labels)
    store.apply(watch.WatchEvent("SYNC", objects=(node("a", "10", label="listed"),)))
    assert store.remember(node("a", "12", label="written")) == "written"  # our own write returned
    store.apply(watch.WatchEvent("MODIFIED", object=node("a", "11", label="stale echo")))
    assert store.items == {"a": "written"}
    store.apply(watch.WatchEvent("MODIFIED", object=node("a", "12", label="echo")))  # the same version: taken
    assert store.items == {"a": "echo"}
    store.remember(node("a", "opaque", label="not a revision"))  # not integers: the last one received wins
    assert store.items == {"a": "not a revision"}


def test_stream_query_and_path() -> None:
    stream = watch.Stream(
        resources.LEASES, "kube-system", label_selector="a=b", field_selector="metadata.name=c"
    )
    assert stream.path == "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
    assert stream.query == {"labelSelector": "a=b", "fieldSelector": "metadata.name=c"}
    assert watch.Stream(resources.NODES).query == {}
