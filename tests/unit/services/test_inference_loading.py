"""The inference service loads each tenant on its own: one tenant's broken pointer or manifest leaves
the others served, shows in /health, and the tenant's next deploy recovers it."""

import pytest
from fastapi.testclient import TestClient

from services.inference.app import create_app
from services.inference.models import ModelRegistry
from tests.unit.services.served_versions import publish_version
from workers import storage
from workers.training import artifacts


@pytest.fixture
def base(tmp_path):
    base = storage.root(f"file://{tmp_path}/objects")
    for tenant in ("acme", "globex"):
        artifacts.write_pointer(base, tenant, publish_version(base, tenant, "scheduled__1"))
    return base


def service(base) -> tuple[ModelRegistry, TestClient]:
    registry = ModelRegistry(base)
    registry.load_current()
    return registry, TestClient(create_app(registry, lambda tenant_id: [], "token"),
                                headers={"Authorization": "Bearer token"})


def test_every_tenant_is_served_and_health_is_ok(base):
    _, client = service(base)
    health = client.get("/health").json()
    assert health == {"status": "ok", "versions": {"acme": artifacts.version_for("scheduled__1", "acme"),
                                                   "globex": artifacts.version_for("scheduled__1", "globex")},
                      "errors": {}}


@pytest.mark.parametrize("broken", ["pointer", "manifest", "missing_version"])
def test_a_broken_tenant_leaves_the_others_served_and_shows_in_health(base, broken):
    version = artifacts.version_for("scheduled__1", "globex")
    if broken == "pointer":
        storage.write_bytes(storage.pointer_path(base, "globex"), b'{"vers')
    elif broken == "manifest":
        storage.write_bytes(storage.models_dir(base, "globex") / version / "manifest.json", b'{"data_fin')
    else:
        artifacts.write_pointer(base, "globex", "m-000000000bad")

    _, client = service(base)

    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert list(health["versions"]) == ["acme"]
    expected = {"pointer": "CURRENT.json is not valid JSON", "manifest": "manifest.json is not valid JSON",
                "missing_version": "has no model version m-000000000bad"}[broken]
    assert list(health["errors"]) == ["globex"] and expected in health["errors"]["globex"]
    recs = client.get("/api/v1/recommend", params={"tenant_id": "acme", "user_id": 7, "k": 3})
    assert recs.status_code == 200 and len(recs.json()["items"]) == 3
    assert client.get("/api/v1/recommend", params={"tenant_id": "globex", "user_id": 7}).status_code == 404


def test_the_next_deploy_of_a_broken_tenant_recovers_it(base):
    storage.write_bytes(storage.pointer_path(base, "globex"), b'{"vers')
    _, client = service(base)
    version = publish_version(base, "globex", "scheduled__2", seed=1)

    assert client.post("/api/v1/deploy", json={"tenant_id": "globex", "version": version}).status_code == 200

    health = client.get("/health").json()
    assert (health["status"], health["versions"]["globex"], health["errors"]) == ("ok", version, {})


def test_deploying_a_version_with_a_torn_manifest_is_refused_with_the_reason(base):
    version = artifacts.version_for("scheduled__1", "globex")
    storage.write_bytes(storage.models_dir(base, "globex") / version / "manifest.json", b'{"data_fin')
    _, client = service(base)

    refused = client.post("/api/v1/deploy", json={"tenant_id": "globex", "version": version})

    assert refused.status_code == 422 and "manifest.json is not valid JSON" in refused.json()["detail"]
