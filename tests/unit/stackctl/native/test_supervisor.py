import configparser
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from stackctl.model.process import INSTANCE
from stackctl.model.settings import REPO
from stackctl.native.stack import NativeStack
from stackctl.native.supervisor import Supervisor, native_argv, native_processes, render_conf

SECRETS = {name: f"secret-{name}" for name in NativeStack.load(REPO).source["secrets"]}


@pytest.fixture
def conf(tmp_path):
    parser = configparser.RawConfigParser()
    parser.read_string(render_conf(NativeStack.load(tmp_path), SECRETS))
    return parser


def test_every_component_is_supervised_with_restart_and_a_log_file(conf):
    programs = {s.split(":", 1)[1] for s in conf.sections() if s.startswith("program:")}
    assert programs == {
        "postgres", "redis", "api-server", "scheduler", "dag-processor", "triggerer",
        "worker-light", "worker-heavy", "flower", "inference", "alertmanager", "pushgateway", "oncall-inbox",
        "statsd-bridge", "prometheus", "node-exporter", "redis-exporter", "postgres-exporter", "blackbox-exporter",
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


def test_pools_autoscale_between_their_minimum_and_maximum(conf):
    source = NativeStack.load(REPO).source
    for pool, spec in source["worker_pools"].items():
        command = conf[f"program:worker-{pool}"]["command"]
        assert f"--autoscale {spec['max_processes']},{spec['min_processes']}" in command
        assert "--concurrency" not in command


def test_heavy_pool_has_prefetch_one_and_a_memory_ceiling(conf):
    heavy = conf["program:worker-heavy"]
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
    assert " -m services.freshpoc ingestion --host 127.0.0.1 --port " in ingestion["command"]
    assert f'FRESHPOC_ADMIN_TOKEN_FILE="{tmp_path.resolve()}/secrets/freshpoc_admin_token"' in ingestion["environment"]
    assert f"--token-file {tmp_path.resolve()}/secrets/freshpoc_token" in ingestion["command"]  # the job routes'
    assert not [value for value in SECRETS.values() if value in ingestion["command"]]


def test_fault_injection_is_off_unless_the_stack_is_started_with_it(tmp_path):
    """The token (and so the admin routes) exists only for `stackctl up --fault-injection`, which is remembered."""
    def ingestion_env(stack: NativeStack) -> str:
        parser = configparser.RawConfigParser()
        parser.read_string(render_conf(stack, {name: SECRETS[name] for name in stack.secret_kinds}))
        return parser["program:freshpoc-ingestion"]["environment"]

    stack = NativeStack.load(tmp_path)
    assert "freshpoc_admin_token" not in stack.secret_kinds
    assert "FRESHPOC_ADMIN_TOKEN_FILE" not in ingestion_env(stack)
    NativeStack.load(tmp_path, fault_injection=True).remember()
    assert "FRESHPOC_ADMIN_TOKEN_FILE" in ingestion_env(NativeStack.load(tmp_path))  # a later start keeps it


def test_each_program_is_the_model_process(conf, tmp_path):
    """The rendered command, memory ceiling, stop signal and timeout, and the start and stop order
    (supervisord's priority: the start phase) are the deployment model's."""
    stack = NativeStack.load(tmp_path)
    for process in native_processes(stack, SECRETS):
        if process.one_shot:
            assert f"program:{process.name}" not in conf
            continue
        section = conf[f"program:{process.name}"]
        argv = [part.replace(INSTANCE, "%(process_num)d") for part in native_argv(stack, process)]
        assert shlex.split(section["command"].replace("%%", "%")) == argv
        assert section["stopsignal"] == process.stop_signal
        assert int(section["stopwaitsecs"]) == process.stop_timeout_s
        assert int(section["numprocs"]) == process.instances
        assert int(section["priority"]) == int(process.phase)


def test_each_program_holds_only_its_own_secrets(conf):
    """A secret's value appears only in the programs whose model process needs it."""
    stack = NativeStack.load(REPO)
    needs = {p.name: set(p.secrets) for p in native_processes(stack, SECRETS)}
    for name, secrets in needs.items():
        if f"program:{name}" not in conf:
            continue
        text = "\n".join(f"{k}={v}" for k, v in conf[f"program:{name}"].items())
        held = {secret for secret, value in SECRETS.items() if value in text}
        assert held <= secrets, f"{name} holds {sorted(held - secrets)}"
    workers = "\n".join(v for k, v in conf["program:worker-heavy"].items())
    for secret in ("fernet_key", "jwt_secret", "admin_password", "api_secret_key"):
        assert SECRETS[secret] not in workers
    assert SECRETS["redis_celery_password"] in workers  # the broker's credentials: workers do hold them
    for secret in ("redis_cache_writer_password", "redis_cache_reader_password", "redis_exporter_password"):
        assert SECRETS[secret] not in workers  # Redis's other users' passwords: they do not


def test_only_the_main_process_of_a_worker_or_postgres_gets_the_stop_signal(conf):
    """A worker's warm shutdown lets its tasks finish (the signal in a task's process would end
    it); PostgreSQL's backends take SIGINT as "cancel query". Every other program stops as a group."""
    for section in (s for s in conf.sections() if s.startswith("program:")):
        main_only = section in ("program:worker-light", "program:worker-heavy", "program:postgres")
        assert conf[section]["stopasgroup"] == str(not main_only).lower(), section
        assert conf[section]["killasgroup"] == "true", section


def test_programs_stop_phase_after_phase_so_a_draining_worker_keeps_its_broker(tmp_path):
    """A real supervisord: the "worker" takes a second to drain on SIGTERM and records whether the
    "broker" (an earlier phase) still runs when it is done."""
    record, broker_pid = tmp_path / "record", tmp_path / "broker.pid"
    worker = (f"trap 'sleep 1; kill -0 $(cat {broker_pid}) && echo broker-up >> {record}; exit 0' TERM;"
              " while :; do sleep 0.1; done")
    socket = tmp_path / "supervisor.sock"
    (tmp_path / "supervisord.conf").write_text("\n".join([
        "[unix_http_server]", f"file={socket}", "[supervisord]", f"logfile={tmp_path / 'supervisord.log'}",
        f"pidfile={tmp_path / 'supervisord.pid'}", "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[program:broker]", f"command=bash -c 'echo $$ > {broker_pid}; exec sleep 600'", "priority=10",
        "[program:worker]", f"command=bash -c {shlex.quote(worker)}", "priority=40", "stopwaitsecs=10",
    ]) + "\n")
    subprocess.run([str(Path(sys.executable).with_name("supervisord")), "-c", str(tmp_path / "supervisord.conf")],
                   check=True)
    supervisor = Supervisor(SimpleNamespace(supervisor_socket=socket))
    try:
        deadline = time.monotonic() + 20
        while {p["statename"] for p in supervisor.processes()} != {"RUNNING"}:
            assert time.monotonic() < deadline, supervisor.processes()
            time.sleep(0.2)
        supervisor.stop_in_order([["worker"], ["broker"]])
        assert {p["name"]: p["statename"] for p in supervisor.processes()} == {"broker": "STOPPED",
                                                                              "worker": "STOPPED"}
    finally:
        supervisor.shutdown()
    assert record.exists() and record.read_text() == "broker-up\n"


def test_tls_requested_at_up_is_kept_for_later_commands(tmp_path):
    """`stackctl up --tls` on a config.yaml with tls off: every later command (status, tenant add, down)
    loads the stack with TLS, or it would speak plain to TLS-only listeners."""
    assert not NativeStack.load(tmp_path).tls
    NativeStack.load(tmp_path, tls=True).remember()
    later = NativeStack.load(tmp_path)
    assert later.tls and later.url("api").startswith("https://")
    assert "ssl=on" in " ".join(native_argv(later, next(p for p in native_processes(later, SECRETS)
                                                           if p.name == "postgres")))
