import json

import pytest

from tests.engine.models import registered_test_models
from wavestream.cli import main
from wavestream.models.registry import model_names


@pytest.fixture(autouse=True, scope="module")
def _test_models():
    with registered_test_models():
        yield


def test_models_table(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["name", "task", "rate", "hop"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(model_names())
    assert rows["test-filter"].split()[1:5] == ["test", "16000", "10", "12.5"]  # latency: hop + look-ahead
    assert "audio -> tokens" in rows["test-tokens"]


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    described = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert set(described) == set(model_names())
    d = described["test-filter"]
    shown = (d["sample_rate"], d["hop"], d["latency_samples"], d["parameters"], d["trained"])
    assert shown == (16000, 160, 40 + 160, 529, False)  # latency: look-ahead + one hop of framing
