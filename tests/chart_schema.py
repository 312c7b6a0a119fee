"""values.schema.json's controller sections, generated from the registry and the controllers' config types.

``make generate`` (``python -m tests.chart_schema``) rewrites them; the chart tests fail when the checked-in
file differs from what this generates. Generated: the shared ``config`` and, per controller of the registry,
its whole section (the settings every controller has + its ``config``: one property per option of its config
dataclass that the chart does not decide). A controller's own extra values (addon-updater's ``mode``,
``bundles``...) are kept as written in the file. Everything else in the file is hand-written.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

from controllers import registry
from controllers.runtime import config
from tests import chart_tools as ct

SCHEMA = ct.CHART / "values.schema.json"

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJECTS = {"type": "array", "items": {"type": "object"}}
_QUANTITIES = {"type": "object", "additionalProperties": {"type": ["string", "number"]}}

# The values every controller section has, in the order values.yaml lists them (config goes after resources).
_ENABLED_REPLICAS_RESOURCES: dict[str, Any] = {
    "enabled": {"type": "boolean"},
    "replicas": {"type": "integer", "minimum": 1},
    "resources": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"requests": _QUANTITIES, "limits": _QUANTITIES, "claims": _OBJECTS},
    },
}
_POD_SETTINGS: dict[str, Any] = {
    "extraEnv": _OBJECTS,
    "podAnnotations": _STRING_MAP,
    "priorityClassName": {"type": "string"},
    "nodeSelector": _STRING_MAP,
    "tolerations": _OBJECTS,
    "affinity": {"type": "object"},
    "serviceAccountAnnotations": _STRING_MAP,
}


def controller_section(entry: registry.Entry, *, extras: dict[str, Any]) -> dict[str, Any]:
    """The schema of one controller's values: the common settings, its options, then ``extras``."""
    options = ct.config_schema(entry.controller.config_type, owned=ct.chart_owned(entry.values_key))
    properties = {**_ENABLED_REPLICAS_RESOURCES, "config": options, **_POD_SETTINGS, **extras}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["enabled", "replicas", "config"],
        "properties": json.loads(json.dumps(properties)),  # a deep copy: no shared sub-objects
    }


def generate(current: dict[str, Any]) -> dict[str, Any]:
    """``current`` with its generated parts replaced; a new controller's section goes after the others."""
    old = current["properties"]
    common = set(_ENABLED_REPLICAS_RESOURCES) | set(_POD_SETTINGS) | {"config"}
    sections = {
        entry.values_key: controller_section(
            entry,
            extras={
                name: value
                for name, value in old.get(entry.values_key, {}).get("properties", {}).items()
                if name not in common
            },
        )
        for entry in registry.CONTROLLERS
    }
    properties: dict[str, Any] = {}
    for name, value in old.items():
        if name == "combined":  # the controllers come right before the combined Deployment
            properties.update(sections)
        if name not in sections:
            properties[name] = ct.config_schema(config.BaseConfig) if name == "config" else value
    properties.update(sections)  # (no-op when "combined" placed them)
    return {**current, "properties": properties}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main(path: pathlib.Path = SCHEMA) -> int:
    text = path.read_text()
    generated = render(generate(json.loads(text)))
    if generated != text:
        path.write_text(generated)
        print(f"wrote {path.relative_to(ct.REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
