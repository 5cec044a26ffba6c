"""What `wavestream models` lists, without building a model or importing torch.

``describe()`` builds the model, and importing torch alone takes over a second. So the part of each
built-in model's description that comes from its code and its card's ``config`` (rate, hop,
latency, kinds, parameter count, stream params) is kept in ``catalog.json``, written from
``describe()`` by ``python -m wavestream.models.catalog``; whether weights exist and the card's
metrics are read on every listing. A model the catalog cannot answer for (an entry written for
another card config, a model registered at run time) is described by building it.
tests/models/test_catalog.py checks every entry against ``describe()``.
"""

from __future__ import annotations

import json
from pathlib import Path

from wavestream.models import registry

CATALOG_PATH = Path(__file__).with_name("catalog.json")
REFRESH = "python -m wavestream.models.catalog"


def read_catalog(path: Path = CATALOG_PATH) -> dict[str, dict]:
    return json.loads(path.read_text()) if path.exists() else {}


def from_catalog(name: str, catalog: dict[str, dict]) -> dict | None:
    """``describe(name)`` from the catalog, or None when its entry is missing or was written for
    another card config than the one shipped now (a retrained model)."""
    entry = catalog.get(name)
    card = registry.read_card(name)
    if entry is None or entry["config"] != card.get("config", {}):
        return None
    return {**entry["description"], **registry.weights_facts(name, card)}


def list_models(path: Path = CATALOG_PATH) -> list[dict]:
    """``describe()`` of every registered model, by name: the built-in ones from the catalog (the
    registry has not imported them), and any registered in this process."""
    catalog = read_catalog(path)
    names = sorted(set(catalog) | set(registry._REGISTRY))
    return [from_catalog(name, catalog) or registry.describe(name) for name in names]


def builtin_names() -> list[str]:
    """The models the built-in modules register (not those registered at run time)."""
    return [name for name in registry.model_names()
            if registry.get_spec(name).build.__module__ in registry.BUILTIN_MODULES]


def write_catalog(path: Path = CATALOG_PATH) -> dict[str, dict]:
    """Describe every built-in model by building it and write the catalog."""
    catalog = {}
    for name in builtin_names():
        description = registry.describe(name)
        for live in registry.weights_facts(name, {}):
            description.pop(live)
        catalog[name] = {"config": registry.read_card(name).get("config", {}), "description": description}
    path.write_text(json.dumps(catalog, indent=2) + "\n")
    return catalog


if __name__ == "__main__":
    print(f"wrote {', '.join(write_catalog())} to {CATALOG_PATH}")
