"""The committed compose and ansible renderings equal a fresh render of the model and airflow/config.yaml."""

import pytest

from stackctl.errors import ConfigError
from stackctl.model import debian, processes, settings
from stackctl.render import ansible, compose


def test_compose_file_is_the_fresh_render():
    """Fails on drift: run `python -m stackctl render compose` after editing airflow/config.yaml."""
    assert compose.COMPOSE_FILE.read_text() == compose.render(settings.load_source())


def test_compose_alertmanager_is_the_fresh_render():
    assert ansible.COMPOSE_ALERTMANAGER_FILE.read_text() == compose.render_alertmanager(settings.load_source())


@pytest.mark.parametrize("name", ["prometheus.yml", "expected_workers.yml"])
def test_compose_prometheus_is_the_fresh_render(name):
    rendered = compose.render_prometheus(settings.load_source())[name]
    assert (ansible.COMPOSE_PROMETHEUS_DIR / name).read_text() == rendered


def test_compose_prometheus_scrapes_compose_services_on_config_ports():
    source = settings.load_source()
    config = compose.render_prometheus(source)["prometheus.yml"]
    for service, port in (("statsd-exporter", "statsd_metrics"), ("flower", "flower"),
                          ("redis-exporter", "redis_exporter"), ("postgres-exporter", "postgres_exporter"),
                          ("node-exporter", "node_exporter"), ("pushgateway", "pushgateway"),
                          ("alertmanager", "alertmanager"), ("freshpoc-writer", "freshpoc_writer")):
        assert f"- {service}:{source['ports'][port]}" in config


@pytest.mark.parametrize("path", list(ansible.render_ansible(settings.load_source())),
                         ids=lambda path: str(path.relative_to(settings.REPO)))
def test_ansible_files_are_the_fresh_render(path):
    """airflow.yml and the monitoring role's templates. Fails on drift: run `python -m stackctl
    render ansible` after editing airflow/config.yaml."""
    assert path.read_text() == ansible.render_ansible(settings.load_source())[path]


def test_a_changed_source_changes_the_compose_render():
    source = settings.load_source()
    changed = {**source, "worker_pools": {**source["worker_pools"], "heavy": {**source["worker_pools"]["heavy"],
                                                                             "max_processes": 3}}}
    assert compose.render(changed) != compose.render(source)
    assert "--autoscale, '3,1'" in compose.render(changed)


def test_a_port_without_a_listening_process_is_refused():
    source = settings.load_source()
    with pytest.raises(ConfigError, match="without one: \\['newthing'\\]"):
        compose.render({**source, "ports": {**source["ports"], "newthing": 1}})


def test_a_literal_dollar_is_refused_in_compose():
    source = settings.load_source()
    airflow = {**source["airflow"], "core": {**source["airflow"]["core"], "parallelism": "$32"}}
    with pytest.raises(ConfigError, match="AIRFLOW__CORE__PARALLELISM"):
        compose.render({**source, "airflow": airflow})


def test_ansible_secrets_are_vault_variables_in_the_processes_that_need_them():
    rendered = ansible.ansible_vars(settings.load_source())
    assert "fernet_key" not in rendered["airflow_settings"]["core"]  # the shared airflow.cfg holds no secret
    by_name = {p["name"]: p for p in rendered["airflow_processes"]}
    assert by_name["scheduler"]["env"]["AIRFLOW__CORE__FERNET_KEY"] == "{{ vault_fernet_key }}"
    assert "AIRFLOW__CORE__FERNET_KEY" not in by_name["worker-heavy"]["env"]
    assert "alertmanager" not in rendered["airflow_connections"]  # its password: the api-server's alone
    assert "vault_alertmanager_password" in by_name["api-server"]["env"]["AIRFLOW_CONN_ALERTMANAGER"]


def test_ansible_deploys_the_monitoring_group():
    rendered = {p["name"]: p for p in ansible.ansible_processes(settings.load_source())}
    assert rendered["prometheus"]["group"] == processes.MONITORING
    assert rendered["prometheus"]["package"] == "prometheus"
    assert rendered["redis-exporter"]["argv"][0] == "prometheus-redis-exporter"
    assert "AIRFLOW_HOME" not in rendered["postgres-exporter"]["supervisor_environment"]  # no Airflow environment
    assert "AIRFLOW_HOME" in rendered["statsd-bridge"]["supervisor_environment"]


def test_ansible_hosts_come_from_the_group_whose_process_listens():
    hosts = ansible.ansible_hosts(settings.load_source())
    assert "groups['controlplane']" in hosts["api"]
    assert "groups['database']" in hosts["postgres"]
    assert "groups['broker']" in hosts["redis"]
    assert "groups['monitoring']" in hosts["statsd"]


def test_ansible_processes_equal_the_model():
    """Each process ansible runs is the model's, with the ansible target's paths and secret spelling."""
    source = settings.load_source()
    model = {p.name: p for p in processes.model(source, ansible.ansible_layout(source))}
    for rendered in ansible.ansible_processes(source):
        process = model[rendered["name"]]
        assert rendered["argv"] == [debian.executable(process.argv[0]), *process.argv[1:]]
        assert rendered["secrets"] == list(process.secrets)
        assert (rendered["memory_limit_mb"], rendered["stop_signal"], rendered["stop_timeout_s"]) == (
            process.memory_limit_mb, process.stop_signal, process.stop_timeout_s)
