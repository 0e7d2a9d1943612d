"""What `make up` and `make demo` print while the user waits: a line per change, never a spinner."""

from __future__ import annotations

import io
import itertools

import pytest

from stackctl.demo import run
from stackctl.errors import ComponentFailedError
from stackctl.model.process import Phase, Process
from stackctl.native import health, lifecycle


def startup_progress(times) -> tuple[lifecycle.StartupProgress, io.StringIO]:
    """A progress whose clock reads `times`, one value per reading."""
    out = io.StringIO()
    return lifecycle.StartupProgress(out=out, clock=iter(times).__next__), out


def test_a_component_gets_a_line_when_it_starts_and_one_when_it_is_healthy():
    progress, out = startup_progress([10.0, 12.1])
    progress.starting("postgres")
    progress.healthy(["postgres"])
    assert out.getvalue().splitlines() == ["  postgres           starting", "  postgres           healthy (2.1 s)"]


def test_a_component_is_said_healthy_once_however_often_a_probe_sees_it():
    progress, out = startup_progress([0.0, 1.0, 2.0, 3.0])
    progress.starting("scheduler")
    for _ in range(3):
        progress.healthy(["scheduler"])
    assert out.getvalue().splitlines()[1:] == ["  scheduler          healthy (1.0 s)"]


def test_a_step_that_is_no_server_is_said_done():
    progress, out = startup_progress([0.0, 7.25])
    progress.starting("airflow-init")
    progress.done("airflow-init")
    assert out.getvalue().splitlines()[-1] == "  airflow-init       done (7.2 s)"


class NoProcessFails:
    def raise_if_failed(self, groups):
        pass


def test_each_process_of_a_wave_is_said_healthy_as_soon_as_its_probe_answers(monkeypatch):
    """The wave's processes are probed together: the one that answers first is said healthy first."""
    progress, out = startup_progress(itertools.count())
    wave = [Process(name, "g", "system", (name,), Phase.DATA) for name in ("postgres", "redis")]
    for process in wave:
        progress.starting(process.name)
    polls = {"postgres": iter([False, False, True]), "redis": iter([True])}
    monkeypatch.setattr(health, "ready", lambda stack, process, secrets: next(polls[process.name]))
    monkeypatch.setattr(lifecycle.time, "sleep", lambda seconds: None)
    lifecycle.wait_until_ready(None, NoProcessFails(), wave, {}, progress)
    assert [line.split()[:2] for line in out.getvalue().splitlines()[2:]] == [["redis", "healthy"],
                                                                              ["postgres", "healthy"]]


def test_a_process_not_ready_in_time_fails_the_start_and_names_itself(monkeypatch):
    clock = itertools.count(step=30)
    monkeypatch.setattr(lifecycle.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(lifecycle.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(health, "ready", lambda stack, process, secrets: False)
    monkeypatch.setattr(health, "why_not_ready", lambda stack, process, secrets: "no pong from: light-1@h")

    class Logs(NoProcessFails):
        def log_tail(self, name):
            return ""

    worker = Process("worker-light", "workers_light", "airflow", ("airflow",), Phase.WORKERS)
    with pytest.raises(ComponentFailedError,
                       match=f"worker-light failed: not healthy after {lifecycle.STARTUP_TIMEOUT_S}s no pong from"):
        lifecycle.wait_until_ready(None, Logs(), [worker], {}, startup_progress(itertools.count())[0])


def ti(task_id: str, state: str | None, map_index: int = -1, rendered: str | None = None) -> dict:
    return {"task_id": task_id, "state": state, "map_index": map_index, "rendered_map_index": rendered}


RUN = {"dag_run_id": "manual__1", "state": "running"}


def test_done_counts_every_ended_instance_and_each_mapped_instance_counts():
    tis = [ti("list_tenants", "success"), ti("check", "skipped"), ti("deploy", "upstream_failed"),
           ti("train_embeddings", "running", 0, "acme"), ti("train_embeddings", "queued", 1, "globex"),
           ti("train_embeddings", None, 2)]
    progress = run.run_progress(tis)
    assert (progress.done, progress.total) == (3, 6)
    assert progress.named == (("running", ("train_embeddings[acme]",)),)


def test_the_line_shows_tasks_done_of_total_and_the_running_ones():
    tis = [ti("list_tenants", "success"), ti("train_embeddings", "running", 0, "acme"),
           ti("train_embeddings", "running", 1), ti("validate", "up_for_retry"), ti("notify", None)]
    assert run.progress_line("tenant_model_training", RUN, run.run_progress(tis)) == (
        "tenant_model_training manual__1: 1/5 tasks done; running: train_embeddings[1], train_embeddings[acme];"
        " retrying: validate")


def test_a_long_list_of_running_instances_is_cut_short():
    tis = [ti("burst", "running", n) for n in range(8)]
    line = run.progress_line("controlplane_smoke", RUN, run.run_progress(tis))
    assert line.endswith("running: burst[0], burst[1], burst[2], burst[3], burst[4] and 3 more")


def test_before_the_scheduler_creates_task_instances_the_line_shows_the_run_state():
    assert run.progress_line("data_quality_check", {"dag_run_id": "manual__2", "state": "queued"},
                             run.run_progress([])) == "data_quality_check manual__2: run queued"


class Snapshots:
    """The task-instance listings of successive polls."""

    def __init__(self, *listings: list[dict]):
        self.listings = iter(listings)
        self.requests = 0

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        self.requests += 1
        return next(self.listings)


def test_a_line_is_printed_only_when_the_progress_changes():
    first = [ti("a", "running"), ti("b", None)]
    api = Snapshots(first, first, [ti("a", "success"), ti("b", None)], [ti("a", "success"), ti("b", "running")],
                    [ti("a", "success"), ti("b", "running")])
    out = io.StringIO()
    on_poll = run.progress_printer(api, "dag", out)
    for _ in range(5):
        on_poll(RUN)
    assert api.requests == 5  # one listing per poll
    assert out.getvalue().splitlines() == ["dag manual__1: 0/2 tasks done; running: a",
                                           "dag manual__1: 1/2 tasks done",
                                           "dag manual__1: 1/2 tasks done; running: b"]
