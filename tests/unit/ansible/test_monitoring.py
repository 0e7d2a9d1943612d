"""The monitoring role as it renders on the example inventory's hosts: Prometheus scrapes the
hosts of the inventory's groups, the configuration passes promtool and amtool, the pool sizes
add up the inventory's workers, and only the monitoring host holds the monitoring secrets."""

from __future__ import annotations

import json
import subprocess

import bcrypt
import pytest
import yaml

from stackctl.model import debian, processes, settings
from stackctl.model.target import LOOPBACK
from stackctl.render import ansible, prometheus

MONITORING_HOST = "monitoring.example.internal"


def rendered(renders, src: str, host: str = MONITORING_HOST):
    return next(r for r in renders if r.host == host and r.src == src)


def host_play(site, host: str, role: str):
    return next(p for p in site.host_plays() if p.host == host and role in p.roles)


def test_prometheus_scrapes_the_first_host_of_each_listening_group_or_its_own_loopback(
        example_site, example_renders):
    """An exporter on Prometheus's own host listens on loopback only: no other host reaches it."""
    source = settings.load_source()
    target = ansible.ansible_target(source)
    model = processes.model(source, target)
    groups = processes.port_groups(model)
    config = yaml.safe_load(rendered(example_renders, "prometheus/prometheus.yml.j2").text)
    scraped = {job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
               for job in config["scrape_configs"]}
    jobs = {}
    for scrape in (s for p in model for s in p.scrape if not s.blackbox):
        host = example_site.inventory.get_hosts(groups[scrape.port])[0].name
        if scrape.port in target.loopback_ports:
            assert groups[scrape.port] == "monitoring", scrape.port
            host = LOOPBACK
        jobs.setdefault(scrape.job, []).append(f"{host}:{source['ports'][scrape.port]}")
    assert {job: targets for job, targets in scraped.items() if job in jobs} == jobs
    assert {s.port for p in model for s in p.scrape} & target.loopback_ports, "no exporter on loopback"
    assert scraped["flower"] == [f"cp-1.example.internal:{source['ports']['flower']}"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        f"{MONITORING_HOST}:{source['ports']['alertmanager']}"]


def test_pool_sizes_add_up_the_workers_of_the_inventory(example_renders):
    """Two light hosts and one heavy host, one instance each (the example's group_vars)."""
    rules = yaml.safe_load(rendered(example_renders, "prometheus/expected_workers.yml.j2").text)["groups"][0]["rules"]
    exprs = {(rule["record"], rule["labels"]["pool"]): rule["expr"] for rule in rules}
    pools = settings.load_source()["worker_pools"]
    assert exprs[(prometheus.EXPECTED_WORKERS, "light")] == "vector(2)"
    assert exprs[(prometheus.EXPECTED_WORKERS, "heavy")] == "vector(1)"
    assert exprs[(prometheus.MAX_PROCESSES, "light")] == f"vector(2 * {pools['light']['max_processes']})"


def test_the_rendered_configuration_passes_promtool_and_amtool(example_renders, tmp_path):
    checks = {"prometheus/expected_workers.yml.j2": ["promtool", "check", "rules"],
              "prometheus/prometheus.yml.j2": ["promtool", "check", "config", "--syntax-only"],
              "alertmanager/alertmanager.yml.j2": ["amtool", "check-config"]}
    for src, command in checks.items():
        path = tmp_path / src.replace("/", "-").removesuffix(".j2")
        path.write_text(rendered(example_renders, src).text)
        result = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_notifies_the_inbox_on_the_monitoring_host(example_renders):
    config = yaml.safe_load(rendered(example_renders, "alertmanager/alertmanager.yml.j2").text)
    port = settings.load_source()["ports"]["oncall_inbox"]
    assert {r["webhook_configs"][0]["url"] for r in config["receivers"]} == {
        f"https://{MONITORING_HOST}:{port}/webhook"}
    assert {r["webhook_configs"][0]["http_config"]["tls_config"]["ca_file"] for r in config["receivers"]} == {
        "/opt/controlplane/tls/ca.crt"}


def test_only_the_monitoring_host_holds_the_monitoring_secrets(example_site):
    monitoring_only = {"monitoring_db_password"}
    for play in example_site.host_plays():
        secrets = set(example_site.evaluate(play, "{{ __common_host_secrets }}"))
        if "monitoring" in play.roles:
            assert {"monitoring_db_password", "flower_password", "redis_exporter_password"} <= secrets
        else:
            assert not secrets & monitoring_only, play.host


def test_the_secret_files_hold_the_vault_values(example_site):
    play = host_play(example_site, MONITORING_HOST, "monitoring")
    files = {item[1]["path"]: item[1]["content"] for item in
             example_site.evaluate(play, "{{ __monitoring_programs | subelements('secret_files') }}")}
    ports = settings.load_source()["ports"]
    assert json.loads(files["/opt/controlplane/secrets/redis-exporter.json"]) == {
        f"rediss://redis.example.internal:{ports['redis']}": "test-vault_redis_exporter_password"}
    assert files["/opt/controlplane/secrets/monitoring_db_password"] == "test-vault_monitoring_db_password"
    assert files["/opt/controlplane/secrets/flower_password"] == "test-vault_flower_password"


def test_the_secret_files_are_where_the_programs_read_them():
    """Each path is in its program's argv or environment, or in its configuration (prometheus.yml:
    the passwords it sends; alertmanager.yml: the inbox's token)."""
    source = settings.load_source()
    configs = {"prometheus": ansible.ansible_monitoring_templates(source)["prometheus/prometheus.yml"],
               "alertmanager": ansible.ansible_monitoring_templates(source)["alertmanager/alertmanager.yml"]}
    for process in ansible.ansible_processes(source):
        named = " ".join([*process["argv"], *process["env"].values(), configs.get(process["name"], "")])
        assert all(f["path"] in named for f in process["secret_files"]), process["name"]


def test_a_listener_gets_the_hash_of_its_password_not_the_password(example_site):
    """Alertmanager's host holds its web config, with a bcrypt hash; the plain password is Prometheus's."""
    play = host_play(example_site, MONITORING_HOST, "monitoring")
    files = {item[1]["path"]: item[1]["content"] for item in
             example_site.evaluate(play, "{{ __monitoring_programs | subelements('secret_files') }}")}
    users = yaml.safe_load(files["/opt/controlplane/web/alertmanager.yml"])["basic_auth_users"]
    assert bcrypt.checkpw(b"test-vault_alertmanager_password", users["admin"].encode())
    by_name = {p["name"]: p for p in ansible.ansible_processes(settings.load_source())}
    assert "/opt/controlplane/secrets/alertmanager_password" not in {
        f["path"].replace("{{ common_prefix }}", "/opt/controlplane") for f in by_name["alertmanager"]["secret_files"]}
    # Prometheus's, which it sends.
    assert files["/opt/controlplane/secrets/alertmanager_password"] == "test-vault_alertmanager_password"


def test_the_configuration_lands_where_the_programs_read_it():
    source = settings.load_source()
    task_file = settings.REPO / "ansible" / "roles" / "monitoring" / "tasks" / "config.yml"
    tasks = [t for t in yaml.safe_load(task_file.read_text()) if "ansible.builtin.template" in t]
    deployed = {item["path"] for task in tasks for item in task.get("loop", [])}
    deployed |= {task["ansible.builtin.template"]["src"].removesuffix(".j2") for task in tasks if "loop" not in task}
    assert deployed == set(ansible.ansible_monitoring_templates(source))
    argv = " ".join(arg for p in ansible.ansible_processes(source) for arg in p["argv"])
    for path in ("prometheus/prometheus.yml", "alertmanager/alertmanager.yml", "blackbox.yml"):
        assert f"--config.file={{{{ common_prefix }}}}/{path}" in argv


def test_every_repository_file_a_program_reads_is_copied_to_the_host(example_site):
    """A file under common_app_dir in a monitoring program's argv is among the repository files the role
    copies (the model's repo_files of its processes): a missing one stops the program at once."""
    play = host_play(example_site, MONITORING_HOST, "monitoring")
    copied = [*example_site.evaluate(play, "{{ __monitoring_reloaded_files }}"),
              *example_site.evaluate(play, "{{ __monitoring_restarted_files }}")]
    app = "{{ common_app_dir }}/"
    read = [arg.split(app, 1)[1] for process in ansible.ansible_processes(settings.load_source())
            if process["group"] == "monitoring" for arg in process["argv"] if app in arg]
    assert len(read) >= 2  # the StatsD mapping, the exporter's queries (the prober's modules are rendered)
    for path in read:
        assert path in copied, f"{path} is not copied to the host"
        assert (settings.REPO / path).is_file(), path
    assert "monitoring/prometheus/rules" in example_site.evaluate(play, "{{ __monitoring_reloaded_files }}")


@pytest.mark.parametrize(("name", "reloads"), [("prometheus", True), ("alertmanager", True),
                                                ("statsd-bridge", False), ("node-exporter", False)])
def test_units_reload_where_the_program_rereads_its_configuration(example_renders, name, reloads):
    unit = next(r for r in example_renders if r.src == "airflow-process.service.j2" and r.label == name)
    assert ("ExecReload=/bin/kill -HUP $MAINPID" in unit.text) is reloads


def test_system_programs_run_from_their_debian_packages(example_site):
    play = host_play(example_site, MONITORING_HOST, "monitoring")
    assert sorted(example_site.evaluate(play, "{{ __monitoring_packages }}")) == sorted(debian.PACKAGES.values())
    programs = example_site.evaluate(play, "{{ __monitoring_programs }}")
    for program in programs:
        if program["package"]:
            assert program["argv"][0] == program["package"]  # Debian installs it under the package's name
