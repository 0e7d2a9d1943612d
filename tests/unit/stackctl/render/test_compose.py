"""compose/docker-compose.yml: valid, refuses to start without .env, and runs the native stack's Airflow settings.

`docker-compose config` resolves the file the way `up` would (offline, no engine needed), so
these tests read what compose would give each container.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from stackctl.errors import ConfigError
from stackctl.model import processes, settings
from stackctl.model.process import HTTP, INSTANCE, SYSTEM, Phase, waves
from stackctl.model.secrets import deployed_secrets, env_name, private_settings, shared_source
from stackctl.model.target import LOOPBACK, Target
from stackctl.native.stack import NativeStack
from stackctl.render import compose, compose_secrets_manager

COMPOSE_FILE = settings.REPO / "compose" / "docker-compose.yml"
ENV_EXAMPLE = settings.REPO / "compose" / ".env.example"


def env_names() -> list[str]:
    return [line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z_]+=", line)]


@pytest.fixture(scope="module")
def env_values() -> dict[str, str]:
    """Random secrets, as a user would generate them: never committed, new for each run."""
    values = {name: secrets.token_urlsafe(24) for name in env_names()}
    values["FERNET_KEY"] = Fernet.generate_key().decode()
    return values


def compose_config(env_file: Path | None, compose_file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess:
    """`docker-compose config`; without env_file compose reads the .env beside the compose file."""
    env_args = ["--env-file", str(env_file)] if env_file else []
    # The test's own environment must not supply a secret that .env lacks.
    environ = {k: v for k, v in os.environ.items() if k not in env_names()}
    return subprocess.run(
        ["docker-compose", "-f", str(compose_file), *env_args, "config"],
        capture_output=True, text=True, timeout=60, env=environ,
    )


@pytest.fixture(scope="module")
def resolved(env_values, tmp_path_factory) -> dict:
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in env_values.items()))
    env_file.chmod(0o600)
    result = compose_config(env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_env_example_names_every_secret_and_holds_no_value():
    names = env_names()
    held = {secret for process in compose.model(settings.load_source()) for secret in process.secrets}
    assert {env_name(s) for s in deployed_secrets(settings.load_source()) if s in held} == set(names)
    assert [line for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z_]+=.", line)] == []


@pytest.mark.parametrize("missing", ["no file", "empty values", "one value missing"])
def test_compose_refuses_to_run_without_its_secrets(missing, env_values, tmp_path):
    # A copy of the compose file in a folder of its own: its .env is what this test writes, or none.
    compose_file = tmp_path / "compose" / "docker-compose.yml"
    compose_file.parent.mkdir()
    shutil.copy(COMPOSE_FILE, compose_file)
    env_file = compose_file.parent / ".env"
    if missing == "empty values":
        env_file.write_text(ENV_EXAMPLE.read_text())
    elif missing == "one value missing":
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env_values.items() if k != "JWT_SECRET"))
    result = compose_config(None, compose_file)
    assert result.returncode != 0
    assert "in compose/.env" in result.stderr


def test_every_secret_reaches_containers_from_env_only(resolved, env_values):
    """No service carries a literal password: every secret value shown came from the test .env."""
    text = yaml.safe_dump(resolved)
    assert "airflow:airflow@" not in text
    for name, value in env_values.items():
        assert value in text, f"{name} is used by no service"


def test_every_long_running_service_has_a_health_check(resolved):
    one_shot = {"airflow-init", "minio-init", "web-config"}
    unchecked = [
        name for name, svc in resolved["services"].items() if name not in one_shot and "healthcheck" not in svc
    ]
    assert unchecked == []


def test_worker_pools_scale_independently(resolved):
    """Each pool is a service of its own; its replicas are the pool's instances (config.yaml)."""
    source = settings.load_source()
    for pool, spec in source["worker_pools"].items():
        service = resolved["services"][f"worker-{pool}"]
        assert "container_name" not in service and "ports" not in service  # --scale would collide
        command = service["command"]
        assert command[command.index("--queues") + 1] == spec["queue"]
        assert command[command.index("--autoscale") + 1] == f"{spec['max_processes']},{spec['min_processes']}"
        assert service["environment"]["AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER"] == str(spec["prefetch_multiplier"])
        assert service["environment"]["DUMB_INIT_SETSID"] == "0"
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert service["deploy"]["replicas"] == spec["instances"]
    heavy = resolved["services"]["worker-heavy"]
    heavy_spec = source["worker_pools"]["heavy"]
    # The ceiling holds per process: the container holds up to max_processes of them.
    assert heavy["deploy"]["resources"]["limits"]["memory"] == (
        f"{heavy_spec['memory_limit_mb'] * heavy_spec['max_processes']}M")


def test_host_ports_bind_to_loopback_only(resolved):
    published = [p for svc in resolved["services"].values() for p in svc.get("ports", [])]
    assert published
    assert all(str(p).startswith("127.0.0.1:") or p.get("host_ip") == "127.0.0.1" for p in published)


# --- compose runs the native stack's Airflow settings --------------------------------------------


def sections(env: dict[str, str]) -> dict[tuple[str, str], str]:
    found = {}
    for name, value in env.items():
        match = re.fullmatch(r"AIRFLOW__([A-Z_]+?)__([A-Z_]+)", name)
        if match:
            found[(match.group(1).lower(), match.group(2).lower())] = str(value)
    return found


def masker(target: Target, bind_host: str):
    """Replace one deployment's topology (hosts, ports, paths, secrets) with neutral tokens."""
    replacements = [(value, f"<secret:{name}>") for name, value in target.secrets.items()]
    replacements += [(target.dags_folder, "<dags>"), (target.home, "<home>")]
    replacements += [(target.repo, "<home>")]  # the code's folder (plugins/): compose keeps it in its home
    # Loopback too: a listener that only its own host asks (the scheduler's health) binds it everywhere.
    hosts = {*target.hosts.values(), bind_host, LOOPBACK}

    def mask(value: str, may_be_a_host: bool = True) -> str:
        for literal, token in replacements:
            value = value.replace(literal, token)
        for host in hosts:  # a whole value, or a URL's host: never "postgres" inside "postgresql"
            url_host = rf"(?<=[@/]){re.escape(host)}(?=[:/]|$)"
            value = "<host>" if value == host and may_be_a_host else re.sub(url_host, "<host>", value)
        for port in set(target.ports.values()):
            value = re.sub(rf"(?<![\w.]){port}(?![\w.])", "<port>", value)
        return value

    return mask


@pytest.fixture(scope="module")
def native(env_values, tmp_path_factory):
    """The native stack's rendering, for a home with the same secret values as the test .env."""
    stack = NativeStack.load(tmp_path_factory.mktemp("native-home"))
    names = [name for name in deployed_secrets(stack.source) if env_name(name) in env_values]
    target = stack.target({name: env_values[env_name(name)] for name in names})
    return stack.source, target


def native_process_settings(source, target, process) -> dict[tuple[str, str], str]:
    """What the native stack hands a process: the shared airflow.cfg plus its own secret-bearing settings."""
    shared = settings.render_settings(shared_source(source), target)
    private = settings.render_settings({**source, "airflow": private_settings(source, process.secrets)}, target)
    return {(section, key): value for rendered in (shared, private)
            for section, options in rendered.items() for key, value in options.items()}


@pytest.mark.parametrize("service", ["scheduler", "api-server", "worker-heavy", "flower", "triggerer"])
def test_compose_airflow_settings_equal_the_native_stack_apart_from_topology(resolved, native, service):
    source, native_target = native
    process = next(p for p in processes.model(source, native_target) if p.name == service)
    native_settings = native_process_settings(source, native_target, process)
    compose_env = resolved["services"][service]["environment"]
    compose_settings = sections(compose_env)
    expected_missing = set(compose.COMPOSE_EXCEPTIONS)
    assert set(native_settings) - set(compose_settings) == expected_missing
    assert set(compose_settings) - set(native_settings) == set()

    compose_target = compose.target(source)
    # compose_target spells secrets as references; docker-compose resolved them to the .env values.
    resolved_secrets = {name: native_target.secrets[name] for name in compose_target.secrets}
    resolved_target = Target(**{**compose_target.__dict__, "secrets": resolved_secrets})
    compose_mask = masker(resolved_target, compose.CONTAINER_BIND_HOST)
    native_mask = masker(native_target, source["bind_host"])
    differing = {
        key: (native_mask(native_settings[key]), compose_mask(compose_settings[key]))
        for key in compose_settings
        if native_mask(native_settings[key]) != compose_mask(compose_settings[key])
    }
    assert differing == {}
    # The masking must not hide everything: a secret-bearing value keeps its secret's name.
    assert any("<secret:" in compose_mask(value) for value in compose_settings.values())


def test_compose_connections_and_variables_equal_the_native_ones(resolved, native):
    source, native_target = native
    # The api-server holds every connection but the inference service's (the cache, read only): it
    # serves the tasks' connections to the workers.
    env = {**resolved["services"]["inference"]["environment"], **resolved["services"]["api-server"]["environment"]}
    compose_target = compose.target(source)
    resolved_secrets = {name: native_target.secrets[name] for name in compose_target.secrets}
    compose_mask = masker(Target(**{**compose_target.__dict__, "secrets": resolved_secrets}), "0.0.0.0")
    native_mask = masker(native_target, source["bind_host"])

    native_conns = settings.render_connections(source, native_target)
    compose_conns = {
        name.removeprefix("AIRFLOW_CONN_").lower(): json.loads(value)
        for name, value in env.items() if name.startswith("AIRFLOW_CONN_")
    }
    assert set(compose_conns) - set(native_conns) == {compose.STORAGE_CONNECTION_ID}
    for conn_id, fields in native_conns.items():
        assert {k: native_mask(str(v), k != "conn_type") for k, v in fields.items()} == {
            k: compose_mask(str(v), k != "conn_type") for k, v in compose_conns[conn_id].items()
        }, conn_id

    compose_vars = {
        name.removeprefix("AIRFLOW_VAR_").lower(): value
        for name, value in env.items() if name.startswith("AIRFLOW_VAR_")
    }
    native_vars = settings.render_variables(source, native_target)
    assert set(compose_vars) == set(native_vars)
    # Listed exception: data lives in MinIO in compose, on the local disk natively.
    assert compose_vars == {**native_vars, **compose.VARIABLES}


def test_init_creates_the_admin_and_sizes_the_airflow_pools(resolved):
    source = settings.load_source()
    command = resolved["services"]["airflow-init"]["command"]
    pools = [command[i + 1] for i, arg in enumerate(command) if arg == "--pool"]
    assert pools == [
        f"{name}:{slots}:{source['airflow_pools'][name]['description']}"
        for name, slots in settings.airflow_pool_slots(source).items()
    ]
    assert command[command.index("--user") + 1].startswith(f"{source['admin_user']}:Admin:")


def compose_model(source):
    return {p.name: p for p in compose.model(source)}


def test_each_airflow_image_service_is_the_model_process(resolved):
    """Command, stop signal and timeout of every Airflow-image service are the deployment model's."""
    source = settings.load_source()
    model = compose_model(source)
    image_services = {name for name, svc in resolved["services"].items() if "build" in svc}
    assert image_services == {p.name for p in model.values() if p.runtime != SYSTEM}
    for name in image_services:
        service, process = resolved["services"][name], model[name]
        argv = [a.replace(f"-{INSTANCE}", "") for a in process.argv]
        assert service["command"][-len(argv):] == argv, name
        if not process.one_shot:
            assert service["stop_signal"] == f"SIG{process.stop_signal}"
            assert service["stop_grace_period"] == f"{process.stop_timeout_s}s"


def test_each_service_holds_only_its_own_secrets(resolved, env_values):
    """A secret from .env reaches a model service only when its process needs that secret."""
    source = settings.load_source()
    for name, process in compose_model(source).items():
        text = yaml.safe_dump(resolved["services"][name].get("environment", {}))
        held = {env for env, value in env_values.items() if value in text}
        # The storage connection (MinIO's credentials) reaches the processes that use storage.
        allowed = {env_name(secret) for secret in process.secrets} | (
            {"MINIO_ROOT_PASSWORD"} if process.uses_storage else set())
        assert held <= allowed, f"{name} holds {sorted(held - allowed)}"
    heavy = yaml.safe_dump(resolved["services"]["worker-heavy"]["environment"])
    for secret in ("FERNET_KEY", "JWT_SECRET", "ADMIN_PASSWORD", "API_SECRET_KEY"):
        assert env_values[secret] not in heavy


# --- every service, port and probe is the model's ------------------------------------------------


@pytest.mark.parametrize("path", list(compose_secrets_manager.render_all(settings.load_source())),
                         ids=lambda path: str(path.relative_to(settings.REPO)))
def test_compose_files_are_the_fresh_render(path):
    """Fails on drift: run `python -m stackctl render compose` after editing airflow/config.yaml."""
    assert path.read_text() == compose_secrets_manager.render_all(settings.load_source())[path]


def test_every_service_is_a_process_of_the_model(resolved):
    assert set(resolved["services"]) == {p.name for p in compose.model(settings.load_source())}


def shifted_ports(source: dict) -> dict:
    return {**source, "ports": {name: 40000 + index for index, name in enumerate(source["ports"])}}


def test_every_port_of_every_service_comes_from_config_yaml():
    """With every port moved, none of the old numbers is left anywhere in what compose renders."""
    source = settings.load_source()
    moved = "\n".join(compose.render_all(shifted_ports(source)).values())
    left = sorted(port for port in set(source["ports"].values()) if re.search(rf"(?<![\d.]){port}(?![\d.])", moved))
    assert left == []


def test_published_ports_are_the_public_ports_on_loopback(resolved):
    source = settings.load_source()
    for name, process in compose_model(source).items():
        expected = [f"127.0.0.1:{source['ports'][port]}:{source['ports'][port]}"
                    for port in process.listens if port in processes.PUBLIC_PORTS]
        published = [f"{p['host_ip']}:{p['published']}:{p['target']}" if isinstance(p, dict) else p.removesuffix("/tcp")
                     for p in resolved["services"][name].get("ports", [])]
        assert published == expected, name


def test_every_health_check_asks_the_model_s_probe(resolved):
    """An HTTP probe's port and path are in the check; every long-running process has one."""
    source = settings.load_source()
    for name, process in compose_model(source).items():
        check = resolved["services"][name].get("healthcheck")
        assert (check is None) == (process.one_shot or process.probe is None), name
        if check and process.probe.kind == HTTP and process.image and process.image.http_probe.startswith("mc"):
            continue  # MinIO's own client asks its health endpoints
        if check and process.probe.kind == HTTP:
            test = " ".join(check["test"])
            assert str(source["ports"][process.probe.port]) in test and process.probe.path in test, name


def test_a_service_waits_for_what_it_reaches_in_an_earlier_wave(resolved):
    """Start order is the model's: each dependency starts in an earlier wave (model/process.py waves), or is
    a one-shot of its own wave, which runs before the wave's other processes start."""
    model = compose.model(settings.load_source())
    by_name = {p.name: p for p in model}
    wave_of = {p.name: index for index, wave in enumerate(waves(model)) for p in wave}
    for process in model:
        for needed in resolved["services"][process.name].get("depends_on", {}):
            assert wave_of[needed] < wave_of[process.name] or (
                by_name[needed].one_shot and not process.one_shot and wave_of[needed] == wave_of[process.name]), (
                process.name, needed)
    assert "prometheus" in {p.name for p in waves(model)[-1]} and waves(model)[-1][0].phase == Phase.ALERTING
    assert resolved["services"]["worker-heavy"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_a_pool_s_size_sets_its_replicas_its_airflow_pool_and_the_workers_the_alerts_expect():
    """One switch (worker_pools.<pool>.instances) sizes compose's replicas and the Airflow pool together."""
    source = settings.load_source()
    heavy = {**source["worker_pools"]["heavy"], "instances": 3}
    resized = {**source, "worker_pools": {**source["worker_pools"], "heavy": heavy}}
    text = compose.render(resized)
    services = yaml.safe_load(text.replace("<<: *airflow-common", "").replace("<<: *airflow-env", ""))["services"]
    assert services["worker-heavy"]["deploy"]["replicas"] == 3
    slots = 3 * heavy["max_processes"]
    assert f"heavy:{slots}:" in " ".join(services["airflow-init"]["command"])
    expected = compose.render_configs(resized)["prometheus/expected_workers.yml"]
    assert "vector(3)" in expected and f"vector({slots})" in expected


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


def test_an_entrypoint_writes_each_secret_file_as_the_native_stack_does(tmp_path):
    """The shell compose's entrypoints run writes what SecretFile.render writes natively, whatever the
    value holds (quotes, $, %, a backslash)."""
    values = {name: f"v-{name}-'\"$x%s\\" for name in settings.load_source()["secrets"]}
    for process in compose.model(settings.load_source()):
        for file in process.secret_files:
            out = tmp_path / file.name
            command = compose.secret_file_command(file, str(out)).replace("$$", "$")
            env = {env_name(secret): values[secret] for secret in file.secrets}
            subprocess.run(["sh", "-c", command], env=env, check=True)
            assert out.read_text() == file.render(values), (process.name, file.name)


# --- the switch to Secrets Manager (compose/secrets-manager.yml) ----------------------------------


def test_with_the_secrets_manager_overlay_the_api_server_and_triggerer_read_it_after_it_is_published(
        env_values, tmp_path):
    overlay = settings.REPO / "compose" / compose_secrets_manager.OVERLAY_FILE.name
    switch = {name: f"value-{name.lower()}" for name in compose_secrets_manager.SETTINGS}
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in {**env_values, **switch}.items()))
    environ = {k: v for k, v in os.environ.items() if k not in env_names()}
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "-f", str(overlay), "--env-file", str(env_file),
                             "config"], capture_output=True, text=True, timeout=60, env=environ)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    publisher = services[compose_secrets_manager.PUBLISHER]
    assert publisher["command"][:6] == ["python", "-m", "stackctl", "secrets", "publish", "--from-environment"]
    assert env_values["ALERTMANAGER_PASSWORD"] in publisher["environment"]["AIRFLOW_CONN_ALERTMANAGER"]
    for name in ("api-server", "triggerer"):
        env = services[name]["environment"]
        assert env["AIRFLOW__SECRETS__BACKEND"].endswith("SecretsManagerBackend"), name
        assert json.loads(env["AIRFLOW__SECRETS__BACKEND_KWARGS"])["endpoint_url"] == switch[
            "SECRETS_MANAGER_ENDPOINT_URL"]
        held = [key for key, value in env.items() if key.startswith("AIRFLOW_CONN_") and value
                and any(secret in value for secret in env_values.values())]
        # No task connection with a secret: object storage's stays, as ansible's does (remote logging's too).
        assert held == [f"AIRFLOW_CONN_{compose.STORAGE_CONNECTION_ID.upper()}"], name
        assert services[name]["depends_on"][compose_secrets_manager.PUBLISHER]["condition"] == (
            "service_completed_successfully")
    assert "AIRFLOW__SECRETS__BACKEND" not in services["worker-light"]["environment"]
    without = subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "-f", str(overlay), "--env-file",
                              str(tmp_path / "missing.env"), "config"], capture_output=True, text=True, timeout=60,
                             env=environ)
    assert without.returncode != 0
