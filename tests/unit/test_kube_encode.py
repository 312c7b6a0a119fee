"""Request bodies are encoded as Go's encoding/json does (the apiserver keeps RawExtensions as given)."""

from __future__ import annotations

from controllers.kube import client


def test_compact_html_escaped_utf8_in_the_order_read() -> None:
    body = {"z": "a && b <x> é \u2028", "a": [1, 2.5, None, True], "m": {}}
    # What Go's json.Marshal writes for the same map read in this order.
    go = '{"z":"a \\u0026\\u0026 b \\u003cx\\u003e é \\u2028","a":[1,2.5,null,true],"m":{}}'
    assert client.encode(body) == go.encode()


def test_escapes_only_inside_strings() -> None:
    assert client.encode({"k<": ["&"]}) == b'{"k\\u003c":["\\u0026"]}'
