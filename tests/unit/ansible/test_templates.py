"""Every template of site.yml renders against the shipped example inventory, with no undefined
variable (the harness is in conftest.py)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from stackctl.model.processes import START_RETRIES


def test_every_template_renders_against_the_example_inventory(example_renders):
    names = {rendered.name for rendered in example_renders}
    assert {"common/airflow-process.service.j2", "common/supervisor-program.conf.j2",
            "workers/airflow-worker@.service.j2", "common/process.env.j2", "common/airflow.cfg.j2",
            "monitoring/prometheus/prometheus.yml.j2", "monitoring/prometheus/expected_workers.yml.j2",
            "monitoring/alertmanager/alertmanager.yml.j2"} <= names
    # One unit per model process: the control plane's, Flower and the reference services included,
    # and the monitoring host's.
    units = {(r.host, r.label) for r in example_renders if r.src == "airflow-process.service.j2"}
    assert {("cp-1.example.internal", "flower"), ("cp-1.example.internal", "freshpoc-writer"),
            ("monitoring.example.internal", "prometheus"), ("monitoring.example.internal", "statsd-bridge")} <= units
    assert not {label for host, label in units if host == "cp-1.example.internal"} & {"prometheus", "redis-exporter"}


@pytest.mark.parametrize("group", ["database", "broker", "monitoring", "controlplane"])
def test_a_missing_host_group_fails_the_render(group, tmp_path, example_inventory, site_of):
    inventory_dir = tmp_path / "production"
    shutil.copytree(example_inventory, inventory_dir)
    hosts_file = inventory_dir / "hosts.yml"
    inventory = yaml.safe_load(hosts_file.read_text())
    del inventory["all"]["children"][group]
    hosts_file.write_text(yaml.safe_dump(inventory))
    with pytest.raises(Exception) as failure:  # noqa: B017 - AssertionError or Ansible's undefined-variable error
        site_of(inventory_dir).render()
    assert group in str(failure.value) or "undefined" in str(failure.value).lower()


def test_every_program_is_restarted_for_minutes_while_its_database_or_broker_is_down(example_renders):
    """As the native stack's supervisord: no target gives up on a process after a few quick exits."""
    supervised = [r for r in example_renders if r.src in ("supervisor-program.conf.j2", "supervisor-worker.conf.j2")]
    units = [r for r in example_renders if r.src in ("airflow-process.service.j2", "airflow-worker@.service.j2")]
    assert {r.src for r in supervised} | {r.src for r in units} == {
        "supervisor-program.conf.j2", "supervisor-worker.conf.j2", "airflow-process.service.j2",
        "airflow-worker@.service.j2"}
    for rendered in supervised:
        assert {"autorestart=true", f"startretries={START_RETRIES}"} <= set(rendered.text.splitlines()), rendered.label
    for rendered in units:
        assert {"Restart=always", "StartLimitIntervalSec=0"} <= set(rendered.text.splitlines()), rendered.label


def test_a_worker_is_stopped_by_a_signal_to_its_main_process_only(example_renders):
    """Celery's warm shutdown: its running tasks finish. A stop signal to the whole group would
    reach each task's process and end the task (the Task SDK's supervisor forwards it)."""
    workers = [r for r in example_renders if r.src in ("supervisor-worker.conf.j2", "airflow-worker@.service.j2")]
    others = [r for r in example_renders if r.src == "supervisor-program.conf.j2"]
    assert workers and others
    for rendered in workers:
        lines = set(rendered.text.splitlines())
        assert lines & {"stopasgroup=false", "KillMode=mixed"}, rendered.label
        assert lines & {"killasgroup=true", "KillMode=mixed"}, rendered.label
    for rendered in others:
        assert "stopasgroup=true" in rendered.text.splitlines(), rendered.label


@pytest.fixture(scope="module")
def secrets_manager_renders(tmp_path_factory, example_inventory, site_of):
    """The example inventory with common_secrets_backend: secrets_manager."""
    inventory_dir = tmp_path_factory.mktemp("inventory") / "production"
    shutil.copytree(example_inventory, inventory_dir)
    main = inventory_dir / "group_vars" / "all" / "main.yml"
    main.write_text(main.read_text() + "common_secrets_backend: secrets_manager\n"
                    "common_secrets_manager_endpoint_url: https://secrets.example.internal\n"
                    "common_aws_endpoints_use_deployment_ca: true\n")
    return site_of(inventory_dir).render()


def rendered(renders, src: str, label: str) -> str:
    return next(r.text for r in renders if r.src == src and r.label == label)


@pytest.mark.parametrize("src", ["process.env.j2", "supervisor-program.conf.j2"])
def test_with_secrets_manager_the_api_server_reads_it_instead_of_holding_the_tasks_connections(
        example_renders, secrets_manager_renders, src):
    local, managed = (rendered(renders, src, "api-server") for renders in (example_renders, secrets_manager_renders))
    assert "AIRFLOW_CONN_ALERTMANAGER" in local and "AIRFLOW__SECRETS__BACKEND" not in local
    assert "AIRFLOW_CONN_ALERTMANAGER" not in managed and "test-vault_alertmanager_password" not in managed
    assert "SecretsManagerBackend" in managed
    assert "AIRFLOW__SECRETS__BACKEND_KWARG__AWS_SECRET_ACCESS_KEY" in managed
    assert "https://secrets.example.internal" in managed
    # A service's own connection and the storage variables stay in its environment; the execution API
    # serves the workers.
    inference = rendered(secrets_manager_renders, src, "inference")
    assert "AIRFLOW_CONN_PLATFORM_REDIS_READER" in inference and "AIRFLOW_VAR_PLATFORM_STORAGE_URI" in inference
    assert "SecretsManagerBackend" not in inference
    assert "SecretsManagerBackend" not in rendered(secrets_manager_renders, "process.env.j2", "worker-heavy")


def test_with_secrets_manager_airflow_cfg_names_no_backend(example_renders, secrets_manager_renders):
    local, managed = (next(r.text for r in renders if r.src == "airflow.cfg.j2")
                      for renders in (example_renders, secrets_manager_renders))
    assert "LocalFilesystemBackend" in local
    assert "[secrets]" not in managed
