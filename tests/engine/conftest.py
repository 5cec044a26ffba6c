import pytest

from tests.engine.models import registered_test_models


@pytest.fixture(autouse=True, scope="module")
def _test_models():
    with registered_test_models():
        yield
