"""The committed compose and ansible renderings equal a fresh render of airflow/config.yaml."""

import pytest

from stackctl import settings, targets
from stackctl.errors import ConfigError


def test_compose_region_is_the_fresh_render():
    """Fails on drift: run `python -m stackctl render compose` after editing airflow/config.yaml."""
    assert targets.committed_compose_region() == targets.render_compose_region(settings.load_source())


def test_compose_alertmanager_is_the_fresh_render():
    assert targets.COMPOSE_ALERTMANAGER_FILE.read_text() == targets.render_compose_alertmanager()


@pytest.mark.parametrize("name", ["prometheus.yml", "expected_workers.yml"])
def test_compose_prometheus_is_the_fresh_render(name):
    rendered = targets.render_compose_prometheus(settings.load_source())[name]
    assert (targets.COMPOSE_PROMETHEUS_DIR / name).read_text() == rendered


def test_compose_prometheus_scrapes_compose_services():
    config = targets.render_compose_prometheus(settings.load_source())["prometheus.yml"]
    for target in ("statsd-exporter:9102", "flower:5555", "redis-exporter:9121", "postgres-exporter:9187",
                   "node-exporter:9100", "pushgateway:9091", "alertmanager:9093"):
        assert f"- {target}" in config


def test_ansible_vars_are_the_fresh_render():
    """Fails on drift: run `python -m stackctl render ansible` after editing airflow/config.yaml."""
    assert targets.ANSIBLE_VARS_FILE.read_text() == targets.render_ansible_vars(settings.load_source())


def test_a_changed_source_changes_the_compose_render():
    source = settings.load_source()
    changed = {**source, "worker_pools": {**source["worker_pools"], "heavy": {**source["worker_pools"]["heavy"],
                                                                             "concurrency": 3}}}
    assert targets.render_compose_region(changed) != targets.render_compose_region(source)
    assert '"--concurrency", "3"' in targets.render_compose_region(changed)


def test_a_component_without_a_compose_service_is_refused():
    source = settings.load_source()
    with pytest.raises(ConfigError, match="without a compose service: newthing"):
        targets.compose_target({**source, "ports": {**source["ports"], "newthing": 1}})


def test_a_literal_dollar_is_refused_in_compose():
    source = settings.load_source()
    airflow = {**source["airflow"], "core": {**source["airflow"]["core"], "parallelism": "$32"}}
    with pytest.raises(ConfigError, match="AIRFLOW__CORE__PARALLELISM"):
        targets.compose_environment({**source, "airflow": airflow})


def test_ansible_secrets_are_vault_variables():
    rendered = targets.ansible_vars(settings.load_source())
    assert rendered["airflow_settings"]["core"]["fernet_key"] == "{{ vault_fernet_key }}"
    assert rendered["airflow_connections"]["platform_db"]["port"] == "{{ controlplane_ports.postgres | int }}"
