"""Every template of site.yml renders against the shipped example inventory, with no undefined
variable (the harness is in conftest.py)."""

from __future__ import annotations

import shutil

import pytest
import yaml


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
