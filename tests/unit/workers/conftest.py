import pytest

from stackctl.demo.data import TenantSpec, generate
from workers import storage

END_US = 1_795_500_000_000_000  # a fixed end time: every generated data set is the same


@pytest.fixture
def base(tmp_path):
    return storage.root(f"file://{tmp_path}/objects")


@pytest.fixture(scope="session")
def small_tenant():
    return generate(TenantSpec("acme", n_users=1500, n_items=600, n_interactions=30_000, seed=3), END_US)


@pytest.fixture(scope="session")
def end_us():
    return END_US


@pytest.fixture(scope="session")
def arrays_of():
    def arrays(data):
        return {"user_id": data.user_id, "item_id": data.item_id, "weight": data.weight,
                "occurred_at_us": data.occurred_at_us}

    return arrays
