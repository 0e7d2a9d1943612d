"""What the model records of one process, for every target.

A process records its argv, its own environment, the host group that runs it, the targets that
run it, the ports it listens on and the ports it reaches, how a target asks whether it is ready
(Probe), when it starts (Phase), the upstream image compose runs it from (Image), what Prometheus
scrapes of it (Scrape), its memory ceiling, how it stops, the secrets it holds and the files it
reads them from, and the folders it writes. The renderers only read these facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from stackctl.model.secrets import SecretFile
from stackctl.model.target import ANSIBLE, COMPOSE, NATIVE, Target

# Host groups. Worker pools run in workers_<pool>; postgres and redis are managed services in
# production (only the native stack and compose run them), object storage likewise (compose runs
# MinIO); monitoring holds Prometheus, its exporters and, in compose, Grafana and the log pipeline.
CONTROLPLANE, MONITORING, DATABASE, BROKER, STORAGE = "controlplane", "monitoring", "database", "broker", "storage"
# Every worker host, whatever its pool (the inventory's parent group of the workers_<pool> groups).
WORKERS = "workers"
# What a process runs: an Airflow command with the Airflow environment, Python code of this
# repository (services/), or a program of its own (PostgreSQL, Redis, Prometheus, its exporters).
AIRFLOW, APP, SYSTEM = "airflow", "app", "system"
EVERY_TARGET = frozenset({NATIVE, COMPOSE, ANSIBLE})
# Where a worker's instance number goes in its Celery hostname; each target substitutes its own
# spelling (supervisord's %(process_num)d, systemd's %i, nothing in compose).
INSTANCE = "{instance}"


class Phase(IntEnum):
    """When a process starts: in this order, and stops in the reverse one (supervisord's priority)."""

    DATA = 10  # PostgreSQL, Redis, object storage
    MONITORING = 15  # what records and routes what the others report: exporters, Alertmanager, the inbox
    INIT = 18  # one-shots: migrations, the admin user, the pools; the bucket; the web configs
    API = 20  # the api-server: workers and people reach Airflow through it
    SCHEDULING = 30  # scheduler, dag-processor, triggerer
    WORKERS = 40
    SERVICES = 50  # Flower, the inference and FreshPoC services
    ALERTING = 60  # Prometheus: last, so starting the stack pages no one; stopped first


# Phases that start only once every process of the earlier phases is ready (or done, for a
# one-shot); the others start together with the phases before them. So a start is four waves:
# the data and monitoring, the init, Airflow and its services, Prometheus. A wave's one-shots run
# first, before its other processes start.
BARRIERS = frozenset({Phase.INIT, Phase.API, Phase.ALERTING})


def waves(processes: list[Process]) -> list[list[Process]]:
    """The processes in start waves: each wave starts together and is ready before the next starts."""
    found: list[list[Process]] = []
    for process in sorted(processes, key=lambda p: p.phase):
        if not found or (process.phase in BARRIERS and found[-1][-1].phase < process.phase):
            found.append([])
        found[-1].append(process)
    return found


# Probe kinds.
HTTP, POSTGRES, REDIS, CELERY, AIRFLOW_JOB = "http", "postgres", "redis", "celery", "airflow_job"


@dataclass(frozen=True)
class Probe:
    """How a target asks a process whether it is ready.

    HTTP: a 200 from `path` on `port` (with the listener's credential, listeners.py); POSTGRES and
    REDIS: the server on `port` answers; CELERY: each worker of the pool answers a ping; AIRFLOW_JOB:
    the job (`job`, e.g. TriggererJob) heartbeats, as the api-server's health document reports it.
    """

    kind: str
    port: str = ""
    path: str = ""
    job: str = ""


@dataclass(frozen=True)
class Image:
    """The upstream image compose runs a SYSTEM process from, and what running the model's argv in it takes.

    entrypoint replaces argv[0] where the image has the program elsewhere or wraps it; data_root is
    a folder its user may write, holding the process's state (a volume); user is who the program
    runs as where the image starts as root (its state folders are made its own); http_probe is the
    command template ({url}) of an HTTP probe with the tools the image has; env, the image's own
    variables for the model's settings, resolved against the process's target; mounts, what else
    the image needs from the host or the compose folder.
    """

    ref: str
    data_root: str = "/tmp"
    entrypoint: tuple[str, ...] = ()
    user: str = ""
    http_probe: str = "wget -q -O /dev/null {url}"
    env: Callable[[Target], dict[str, str]] = lambda target: {}
    mounts: tuple[str, ...] = ()
    host_pid: bool = False  # sees the host's processes (node_exporter)


@dataclass(frozen=True)
class Scrape:
    """What Prometheus scrapes of a process: /metrics on `port` as `job`, or (blackbox) a probe of its
    health URL by the blackbox exporter's `module`. The job names are what rules and dashboards select on."""

    job: str
    port: str
    labels: dict[str, str] = field(default_factory=dict)
    blackbox: str = ""
    honor_labels: bool = False  # keep the labels the scraped series carry (the Pushgateway's batch jobs)


@dataclass(frozen=True)
class Process:
    name: str
    group: str
    runtime: str
    argv: tuple[str, ...]
    phase: Phase
    env: dict[str, str] = field(default_factory=dict)
    runs_on: frozenset[str] = EVERY_TARGET
    listens: tuple[str, ...] = ()
    reaches: tuple[str, ...] = ()
    probe: Probe | None = None
    image: Image | None = None  # SYSTEM processes only: the others run from the Airflow image
    scrape: tuple[Scrape, ...] = ()
    secrets: tuple[str, ...] = ()
    # The files it reads secrets from (under the target's secrets folder).
    secret_files: tuple[SecretFile, ...] = ()
    # The secret-bearing Airflow connections it uses (connections without a secret are shared).
    connections: tuple[str, ...] = ()
    # Folders it writes, under the target's home; configuration files rendered for it, under the
    # target's config folder; files of the repository it reads.
    state: tuple[str, ...] = ()
    config_files: tuple[str, ...] = ()
    repo_files: tuple[str, ...] = ()
    # Reads or writes the platform's object storage, or serves its connection to tasks (a target
    # with s3:// hands it the credentials).
    uses_storage: bool = False
    memory_limit_mb: int = 0
    stop_signal: str = "TERM"
    stop_timeout_s: int = 30
    # The stop signal goes to the whole process group, or (False) to the main process only, which
    # stops its children itself: PostgreSQL's postmaster (its backends take SIGINT as "cancel
    # query"), and a Celery worker, whose warm shutdown lets its running tasks finish (the signal
    # in a task's process would end the task). What is left at the stop timeout is killed as a group.
    stop_as_group: bool = True
    # The signal on which it re-reads its configuration without a restart ("" = it does not).
    reload_signal: str = ""
    instances: int = 1
    one_shot: bool = False

    @property
    def pool(self) -> str | None:
        return self.group.removeprefix("workers_") if self.group.startswith("workers_") else None


def worker_group(pool: str) -> str:
    return f"workers_{pool}"


def celery_hostname(pool: str, instance: str | int, host: str = "%h") -> str:
    """<pool>-<n>@<host>: Flower, `celery inspect` and the worker-pool alerts read the pool back from it."""
    return f"{pool}-{instance}@{host}"


def web_config_file(listener: str) -> str:
    """Where Prometheus, Alertmanager or the Pushgateway reads its basic auth (render/web_auth.py), in
    the config folder."""
    return f"web/{listener}.yml"
