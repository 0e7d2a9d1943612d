"""The demo seed writes through stackctl/ops/tenants.py's writers: the same files and rows as before."""

import pytest

from stackctl.demo import seed
from stackctl.demo.data import TenantSpec, generate, to_parquet_parts
from workers import storage
from workers.training.data import load_interactions

END_US = 1_795_500_000_000_000


@pytest.fixture(scope="module")
def data():
    return generate(TenantSpec("acme", n_users=300, n_items=100, n_interactions=4000, seed=3), END_US)


def test_the_files_are_the_generators_parquet_parts(tmp_path, data):
    base = storage.root(f"file://{tmp_path}")
    storage.write_bytes(storage.training_dir(base, "acme") / "part-00009.parquet", b"an older export")
    assert seed.export_tenant(base, data) == ["part-00000.parquet"]
    folder = tmp_path / "tenants/acme/training/interactions"
    assert [p.name for p in folder.iterdir()] == ["part-00000.parquet"]
    assert (folder / "part-00000.parquet").read_bytes() == to_parquet_parts(data.to_arrow())[0]
    assert load_interactions(base, "acme")[1]["interactions"] == 4000


def test_loading_again_replaces_the_rows(platform_db, data):
    seed.load_tenant(platform_db, data)
    seed.load_tenant(platform_db, data)
    with platform_db.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM items),"
                    " (SELECT count(*) FROM user_interactions), (SELECT count(DISTINCT title) FROM items),"
                    " (SELECT name FROM tenants)")
        assert cur.fetchone() == (300, 100, 4000, 100, "Acme")
