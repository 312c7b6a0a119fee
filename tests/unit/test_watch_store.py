"""The watch store every controller reads: parsed once, newest version wins, a re-list replaces it all,
and a listing read before changes the watch already delivered never undoes them."""

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


def sync(version: str, *objects: dict[str, object]) -> watch.WatchEvent:
    return watch.WatchEvent("SYNC", objects=objects, resource_version=version)


def test_a_listing_read_before_a_change_the_watch_delivered_does_not_undo_it() -> None:
    """The race of a confirming re-read (leader-watchdog): the list is read at 10, the watch delivers the
    node's status at 11 before the listing is applied. Replacing the store with the listing would show the
    node NotReady until its next change — for ever, for a node whose kubelet only renews its Lease."""
    store = watch.Store(watch.Stream(resources.NODES), labels)
    store.apply(sync("5"))
    store.apply(watch.WatchEvent("ADDED", object=node("a", "10", label="no status")))
    store.apply(watch.WatchEvent("MODIFIED", object=node("a", "11", label="ready")))
    store.apply(sync("10", node("a", "10", label="no status")))
    assert store.items == {"a": "ready"}
    store.apply(watch.WatchEvent("DELETED", object=node("a", "12", label="ready")))
    store.apply(sync("11", node("a", "11", label="ready")))  # read before the deletion: no ghost
    assert store.items == {}


def test_a_newer_listing_is_taken_and_the_late_events_it_covers_are_dropped() -> None:
    """A lagging watch (its apiserver's etcd restarting): a fresh list at 20 is ahead of it; the changes the
    watch delivers late, up to 20, are in that listing already (an ADDED of b, deleted by 20, is no ghost)."""
    store = watch.Store(watch.Stream(resources.NODES), labels)
    store.apply(sync("5", node("a", "3", label="a3"), node("b", "4", label="b4")))
    store.apply(sync("20", node("a", "15", label="a15"), node("c", "18", label="c18")))
    assert store.items == {"a": "a15", "c": "c18"}
    store.apply(watch.WatchEvent("ADDED", object=node("b", "6", label="b6")))
    store.apply(watch.WatchEvent("MODIFIED", object=node("a", "14", label="a14")))
    store.apply(watch.WatchEvent("DELETED", object=node("c", "7", label="c7")))
    assert store.items == {"a": "a15", "c": "c18"}
    store.apply(watch.WatchEvent("MODIFIED", object=node("a", "21", label="a21")))
    assert store.items == {"a": "a21", "c": "c18"}


def test_a_write_of_its_own_outlives_an_older_listing_and_a_deletion_before_it() -> None:
    store = watch.Store(watch.Stream(resources.NODES), labels)
    store.apply(sync("5"))
    store.remember(node("c", "40", label="created by us"))
    store.apply(sync("35"))  # read before our write: does not know c yet
    assert store.items == {"c": "created by us"}
    store.apply(watch.WatchEvent("DELETED", object=node("c", "38", label="an earlier c")))
    assert store.items == {"c": "created by us"}
    store.apply(watch.WatchEvent("DELETED", object=node("c", "41", label="created by us")))
    assert store.items == {}


def test_stream_query_and_path() -> None:
    stream = watch.Stream(
        resources.LEASES, "kube-system", label_selector="a=b", field_selector="metadata.name=c"
    )
    assert stream.path == "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
    assert stream.query == {"labelSelector": "a=b", "fieldSelector": "metadata.name=c"}
    assert watch.Stream(resources.NODES).query == {}
