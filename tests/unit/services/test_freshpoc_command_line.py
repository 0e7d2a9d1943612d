"""The ingestion rules reach the service from airflow/config.yaml, through the process model's command line."""

from pathlib import Path

import pytest

from services.freshpoc.__main__ import command_line, ingestion_policy
from stackctl.model import processes, settings
from stackctl.native.stack import NativeStack
from stackctl.native.supervisor import native_processes
from stackctl.render import ansible


def policy_of(argv):
    parser = command_line()
    return ingestion_policy(parser, parser.parse_args(argv))


def test_the_native_ingestion_process_gets_config_yaml_s_rules(tmp_path):
    stack = NativeStack.load(tmp_path)
    model = native_processes(stack, dict.fromkeys(stack.source["secrets"], "x"))
    ingestion = next(p for p in model if p.name == "freshpoc-ingestion")
    rules = stack.source["freshpoc"]["ingestion"]
    policy = policy_of(list(ingestion.argv[ingestion.argv.index("services.freshpoc") + 1:]))
    assert policy.allowed_roots == tuple(Path(root.format(repo=settings.REPO)).resolve()
                                         for root in rules["allowed_roots"])
    assert policy.allowed_roots == (settings.REPO / "services" / "freshpoc" / "samples",)
    assert (policy.max_clone_bytes, policy.clone_timeout_s) == (rules["max_clone_mb"] * 2**20, rules["clone_timeout_s"])
    assert all("--allowed-root" not in p.argv for p in model if p.name != "freshpoc-ingestion")


def test_ansible_runs_the_ingestion_service_with_the_rules_under_its_checkout():
    source = settings.load_source()
    model = processes.model(source, ansible.ansible_target(source))
    argv = next(p for p in model if p.name == "freshpoc-ingestion").argv
    assert argv[argv.index("--allowed-root") + 1] == "{{ common_app_dir }}/services/freshpoc/samples"


def test_ingestion_without_its_rules_does_not_start(capsys):
    with pytest.raises(SystemExit):
        policy_of(["ingestion", "--port", "1"])
    assert "ingestion needs --allowed-root" in capsys.readouterr().err
    assert policy_of(["miner", "--port", "1"]) is None
