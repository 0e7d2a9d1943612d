import configparser
import re

import pytest
import yaml

from stackctl.errors import ConfigError
from stackctl.model import settings
from stackctl.model.target import ANSIBLE, COMPOSE, NATIVE, Target
from workers.freshpoc import services as freshpoc_services


@pytest.fixture(scope="module")
def source():
    return settings.load_source()

def target(**secrets):
    names = settings.load_source()["secrets"]
    return Target(
        kind=NATIVE, home="/state", dags_folder="/repo/dags", repo="/repo", bind_host="127.0.0.1",
        hosts={name: f"{name}.internal" for name in settings.load_source()["ports"]},
        ports=settings.load_source()["ports"],
        secrets={name: secrets.get(name, f"<{name}>") for name in names},
    )

def test_every_setting_is_a_known_airflow_option(source):
    """A typo in config.yaml would otherwise be ignored by Airflow without a word."""
    from airflow.configuration import conf

    from plugins import request_limits

    ours = {request_limits.SECTION: {request_limits.OPTION: {}}}  # options our plugins read
    unknown = [
        f"[{section}] {key}"
        for section, options in source["airflow"].items()
        for key in options
        if key not in conf.configuration_description.get(section, {}).get("options", ours.get(section, {}))
    ]
    assert unknown == []

def test_render_resolves_every_placeholder(source):
    rendered = settings.render_settings(source, target())
    leftovers = [
        f"[{s}] {k}={v}" for s, opts in rendered.items() for k, v in opts.items() if re.search(r"\{[a-z_.]+\}", v)
    ]
    assert leftovers == []
    assert rendered["core"]["execution_api_server_url"] == "http://api.internal:8080/execution/"
    assert rendered["celery"]["broker_url"] == "redis://celery:<redis_celery_password>@redis.internal:6380/0"

def test_shared_secrets_are_one_value_for_every_component(source):
    rendered = settings.render_settings(source, target(jwt_secret="J", api_secret_key="K", fernet_key="F"))
    assert rendered["api_auth"]["jwt_secret"] == "J"
    assert rendered["api"]["secret_key"] == "K"
    assert rendered["core"]["fernet_key"] == "F"

def test_celery_executor_with_late_acks_and_no_examples(source):
    rendered = settings.render_settings(source, target())
    assert rendered["core"]["executor"] == "CeleryExecutor"
    assert rendered["celery"]["task_acks_late"] == "True"
    assert rendered["core"]["load_examples"] == "False"
    assert rendered["core"]["auth_manager"].endswith("FabAuthManager")

def test_visibility_timeout_exceeds_the_longest_task_timeout(source):
    rendered = settings.render_settings(source, target())
    visibility = int(rendered["celery_broker_transport_options"]["visibility_timeout"])
    assert visibility > int(rendered["core"]["default_task_execution_timeout"])
    assert visibility > int(source["max_task_timeout_s"])

def test_every_listener_binds_to_loopback(source):
    rendered = settings.render_settings(source, target())
    assert source["bind_host"] == "127.0.0.1"
    assert rendered["api"]["host"] == "127.0.0.1"
    assert rendered["celery"]["flower_host"] == "127.0.0.1"
    assert rendered["scheduler"]["scheduler_health_check_server_host"] == "127.0.0.1"

CREDENTIALS = [
    ("core", "fernet_key"), ("api", "secret_key"), ("api_auth", "jwt_secret"), ("database", "sql_alchemy_conn"),
    ("celery", "broker_url"), ("celery", "result_backend"), ("celery", "flower_basic_auth"),
]

@pytest.mark.parametrize(("section", "key"), CREDENTIALS)
def test_every_credential_comes_from_a_generated_secret(source, section, key):
    rendered = settings.render_settings(source, target())
    assert re.search(r"<[a-z_]+>", rendered[section][key]), f"[{section}] {key} holds no generated secret"

def test_airflow_cfg_round_trips_through_configparser(source):
    rendered = settings.render_settings(source, target())
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(settings.to_airflow_cfg(rendered))
    assert {s: dict(parser[s]) for s in parser.sections()} == rendered

def test_env_form_matches_the_cfg_form(source):
    rendered = settings.render_settings(source, target())
    env = settings.to_env(rendered)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert len(env) == sum(len(options) for options in rendered.values())

def test_heavy_airflow_pool_follows_the_heavy_worker_pools_maximum(source):
    slots = settings.airflow_pool_slots(source)
    heavy = source["worker_pools"]["heavy"]
    assert slots["heavy"] == heavy["instances"] * heavy["max_processes"]
    assert heavy["prefetch_multiplier"] == 1 and heavy["memory_limit_mb"] > 0


@pytest.mark.parametrize(("low", "high"), [(0, 4), (5, 4), (None, 4), ("2", 4)])
def test_autoscale_bounds_must_be_whole_numbers_in_order(tmp_path, source, low, high):
    pools = {**source["worker_pools"], "light": {**source["worker_pools"]["light"],
                                                 "min_processes": low, "max_processes": high}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**source, "worker_pools": pools}))
    with pytest.raises(ConfigError, match="worker_pools.light: need whole numbers 1 <= min_processes <= max_p"):
        settings.load_source(path)

def test_unknown_placeholder_is_a_clear_error(source):
    broken = {**source, "airflow": {"core": {"dags_folder": "{nowhere}"}}}
    with pytest.raises(ConfigError, match=r"\[core\] dags_folder: unknown placeholder"):
        settings.render_settings(broken, target())

def test_default_queue_must_be_served_by_a_pool(tmp_path, source):
    broken = {**source, "airflow": {**source["airflow"], "operators": {"default_queue": "nobody"}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(ConfigError, match="default_queue=nobody is served by no worker pool"):
        settings.load_source(path)


# --- the FreshPoC services' ports and connections (their owner: workers/freshpoc/services.py) ----

def test_each_freshpoc_service_has_an_http_connection_to_its_port_with_the_token_of_its_role(source):
    for service in freshpoc_services.SERVICES:
        name = service.conn_id
        fields = source["connections"][name]
        assert fields["conn_type"] == "http" and (fields["host"], fields["port"]) == (f"{{hosts.{name}}}",
                                                                                     f"{{ports.{name}}}")
        assert (fields.get("password") == "{secrets.freshpoc_token}") is service.jobs
        assert name in source["ports"]


def test_config_yaml_types_no_freshpoc_connection():
    typed = yaml.safe_load(settings.CONFIG_SOURCE.read_text())["connections"]
    assert [name for name in typed if name.startswith("freshpoc_")] == []


def test_a_typed_freshpoc_connection_unlike_the_derived_one_is_refused(tmp_path, source):
    connections = {**source["connections"], "freshpoc_miner": {**source["connections"]["freshpoc_miner"], "login": "x"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**source, "connections": connections}))
    with pytest.raises(ConfigError, match="connections.freshpoc_miner: derived from workers/freshpoc/services.py"):
        settings.load_source(path)


@pytest.mark.parametrize("ports", [{"freshpoc_miner": None}, {"freshpoc_lineage": 8097}])
def test_a_freshpoc_port_for_each_service_and_no_other(tmp_path, source, ports):
    changed = {name: port for name, port in {**source["ports"], **ports}.items() if port is not None}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**source, "ports": changed}))
    with pytest.raises(ConfigError, match="ports: one freshpoc_<service> per service of workers/freshpoc/services.py"):
        settings.load_source(path)


def test_a_path_in_a_url_is_quoted_but_for_its_jinja_references():
    assert settings._quote("/srv/my stack/tls/ca.crt") == "/srv/my%20stack/tls/ca.crt"
    assert settings._quote("{{ common_prefix }}/my dir/ca.crt") == "{{ common_prefix }}/my%20dir/ca.crt"


def test_tls_is_the_native_stacks_choice_always_ansibles_and_not_yet_composes(source):
    off, on = {**source, "tls": False}, {**source, "tls": True}
    assert (settings.tls_for(off, NATIVE), settings.tls_for(on, NATIVE)) == (False, True)
    assert settings.tls_for(off, ANSIBLE) is settings.tls_for(on, ANSIBLE) is True
    assert settings.tls_for(off, COMPOSE) is False
    with pytest.raises(ConfigError, match="compose hosts get no certificates yet"):
        settings.tls_for(on, COMPOSE)
