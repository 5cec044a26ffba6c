import pytest

from tests.engine.models import register_test_models


@pytest.fixture(autouse=True, scope="session")
def test_models():
    register_test_models()
