"""`wavestream models` lists from catalog.json: it must say what building the models says."""

from __future__ import annotations

import json
import subprocess
import sys

from wavestream.models.catalog import REFRESH, builtin_names, from_catalog, list_models, read_catalog
from wavestream.models.registry import describe, model_names


def test_the_listing_agrees_with_describe_for_every_registered_model():
    catalog = read_catalog()
    assert sorted(catalog) == builtin_names(), f"catalog.json lists other models than the registry: run `{REFRESH}`"
    described = {name: describe(name) for name in model_names()}
    for name in catalog:
        assert from_catalog(name, catalog) == described[name], f"catalog.json is stale for {name!r}: run `{REFRESH}`"
    assert list_models() == list(described.values())


def test_a_model_retrained_with_another_config_is_described_by_building_it(tmp_path):
    catalog = read_catalog()
    catalog["enhance"]["config"] = {**catalog["enhance"]["config"], "hidden": 1}  # as if the card had changed
    catalog["enhance"]["description"]["parameters"] = 0
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    listed = {d["name"]: d for d in list_models(path)}
    assert listed["enhance"] == describe("enhance")


def test_listing_the_models_loads_no_torch():
    code = ("import io, sys, contextlib; from wavestream.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['models', '--json']) == 0\n"
            "loaded = [m for m in ('torch', 'safetensors', 'fastapi') if m in sys.modules]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
