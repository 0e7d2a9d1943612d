import configparser

import pytest

from stackctl.layout import NativeStack
from stackctl.supervisor import render_conf


@pytest.fixture
def conf(tmp_path):
    parser = configparser.RawConfigParser()
    parser.read_string(render_conf(NativeStack.load(tmp_path)))
    return parser


def test_every_component_is_supervised_with_restart_and_a_log_file(conf):
    programs = {s.split(":", 1)[1] for s in conf.sections() if s.startswith("program:")}
    assert programs == {
        "postgres", "redis", "api-server", "scheduler", "dag-processor", "triggerer",
        "worker-light", "worker-heavy", "flower", "inference", "alertmanager", "pushgateway", "oncall-inbox",
        "statsd-bridge", "prometheus", "node-exporter", "redis-exporter", "postgres-exporter",
        "freshpoc-ingestion", "freshpoc-miner", "freshpoc-analyzer", "freshpoc-writer", "freshpoc-query",
        "freshpoc-reporting",
    }
    for name in programs:
        section = conf[f"program:{name}"]
        assert section["autorestart"] == "true"
        assert section["stdout_logfile"].endswith(".log")


def test_pools_listen_on_their_own_queues_with_distinct_hostnames(conf):
    light, heavy = conf["program:worker-light"]["command"], conf["program:worker-heavy"]["command"]
    assert "--queues light" in light and "--celery-hostname 'light-%(process_num)d@%%h'" in light
    assert "--queues heavy" in heavy and "--celery-hostname 'heavy-%(process_num)d@%%h'" in heavy


def test_exporters_listen_on_loopback_and_take_no_password_on_the_command_line(conf):
    for name in ("prometheus", "node-exporter", "redis-exporter", "postgres-exporter"):
        command = conf[f"program:{name}"]["command"]
        assert "--web.listen-address=127.0.0.1:" in command
        assert "password=" not in command.lower()
    assert "--check-single-keys=db0=light,db0=heavy" in conf["program:redis-exporter"]["command"]


def test_pushgateway_keeps_its_results_in_the_stack_home(conf, tmp_path):
    assert f"--persistence.file={tmp_path.resolve()}/pushgateway/metrics.data" in conf["program:pushgateway"]["command"]


def test_heavy_pool_has_one_slot_prefetch_one_and_a_memory_ceiling(conf):
    heavy = conf["program:worker-heavy"]
    assert "--concurrency 1" in heavy["command"]
    assert heavy["command"].startswith("prlimit --as=")
    assert 'AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER="1"' in heavy["environment"]


def test_postgres_runs_unprivileged_and_on_loopback(conf):
    postgres = conf["program:postgres"]
    assert "listen_addresses=127.0.0.1" in postgres["command"]
    assert postgres.get("user") in (None, "cpstack")


def test_supervisor_socket_is_private(conf):
    assert conf["unix_http_server"]["chmod"] == "0700"
    assert "inet_http_server" not in conf


def test_freshpoc_services_take_their_token_from_a_file_not_the_command_line(conf, tmp_path):
    ingestion = conf["program:freshpoc-ingestion"]
    assert ingestion["command"].startswith("python -m services.freshpoc ingestion --host 127.0.0.1 --port ")
    assert f'FRESHPOC_ADMIN_TOKEN_FILE="{tmp_path.resolve()}/secrets/freshpoc_admin_token"' in ingestion["environment"]
    assert "token" not in ingestion["command"]
