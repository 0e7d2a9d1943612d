"""The committed ansible rendering equals a fresh render of the model and airflow/config.yaml, and
each process it deploys is the model's."""

import pytest

from stackctl.model import debian, processes, settings
from stackctl.model.infrastructure import MANAGED_GROUPS
from stackctl.model.process import MONITORING
from stackctl.model.target import HTTPS_PORTS
from stackctl.render import ansible


@pytest.mark.parametrize("path", list(ansible.render_ansible(settings.load_source())),
                         ids=lambda path: str(path.relative_to(settings.REPO)))
def test_ansible_files_are_the_fresh_render(path):
    """airflow.yml and the monitoring role's templates. Fails on drift: run `python -m stackctl
    render ansible` after editing airflow/config.yaml."""
    assert path.read_text() == ansible.render_ansible(settings.load_source())[path]


def test_ansible_secrets_are_vault_variables_in_the_processes_that_need_them():
    rendered = ansible.ansible_vars(settings.load_source())
    assert "fernet_key" not in rendered["airflow_settings"]["core"]  # the shared airflow.cfg holds no secret
    by_name = {p["name"]: p for p in rendered["airflow_processes"]}
    assert by_name["scheduler"]["env"]["AIRFLOW__CORE__FERNET_KEY"] == "{{ vault_fernet_key }}"
    assert "AIRFLOW__CORE__FERNET_KEY" not in by_name["worker-heavy"]["env"]
    assert "alertmanager" not in rendered["airflow_connections"]  # its password: the api-server's alone
    assert "vault_alertmanager_password" in by_name["api-server"]["connection_env"]["AIRFLOW_CONN_ALERTMANAGER"]
    # What the controller publishes with Secrets Manager: every connection the api-server looks up for tasks.
    assert set(rendered["airflow_secret_connections"]) == {
        env.removeprefix("AIRFLOW_CONN_").lower() for env in by_name["api-server"]["connection_env"]}


def test_ansible_deploys_the_monitoring_group():
    rendered = {p["name"]: p for p in ansible.ansible_processes(settings.load_source())}
    assert rendered["prometheus"]["group"] == MONITORING
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
    model = {p.name: p for p in processes.model(source, ansible.ansible_target(source))}
    deployed = [rendered["name"] for rendered in ansible.ansible_processes(source)]
    assert deployed == [name for name, p in model.items() if p.group not in MANAGED_GROUPS]
    for rendered in ansible.ansible_processes(source):
        process = model[rendered["name"]]
        assert rendered["argv"] == [debian.executable(process.argv[0]), *process.argv[1:]]
        assert rendered["secrets"] == list(process.secrets)
        assert (rendered["memory_limit_mb"], rendered["stop_signal"], rendered["stop_timeout_s"]) == (
            process.memory_limit_mb, process.stop_signal, process.stop_timeout_s)
        assert rendered["priority"] == int(process.phase)
        assert rendered["probe"] == (process.probe and {**process.probe.__dict__, "scheme": "https" if (
            process.probe.port in HTTPS_PORTS) else "http"})


def test_ansible_hosts_always_use_tls_and_verify_against_their_own_ca_file():
    """config.yaml's tls is the native stack's: ansible's hosts use TLS with it off. Every client verifies
    against the host's ca.crt, whose path stays a Jinja reference inside the URLs (not percent-encoded)
    for the host to resolve."""
    source = {**settings.load_source(), "tls": False}
    rendered = ansible.ansible_vars(source)
    ca = rendered["airflow_tls"]["ca"]
    assert ca == "{{ common_prefix }}/tls/ca.crt"
    by_name = {p["name"]: p["env"] for p in rendered["airflow_processes"]}
    assert by_name["worker-heavy"]["AIRFLOW__CELERY__BROKER_URL"].startswith("rediss://")
    assert by_name["worker-heavy"]["AIRFLOW__CELERY__BROKER_URL"].endswith(f"?ssl_cert_reqs=required&ssl_ca_certs={ca}")
    assert by_name["scheduler"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(
        f"/airflow?sslmode=verify-full&sslrootcert={ca}")
    assert f'"sslrootcert": "{ca}"' in rendered["airflow_secret_connections"]["platform_db"]["extra"]
    core, api = rendered["airflow_settings"]["core"], rendered["airflow_settings"]["api"]
    assert core["execution_api_server_url"].startswith("https://")
    assert (api["ssl_cert"], api["ssl_key"], api["ssl_ca_file"]) == (
        rendered["airflow_tls"]["cert"], rendered["airflow_tls"]["key"], ca)
    assert "%7B" not in ansible.render_ansible_vars(source)
