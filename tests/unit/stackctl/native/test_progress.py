"""What `make up` and `make demo` print while the user waits: a line per change, never a spinner."""

from __future__ import annotations

import io
import itertools

from stackctl.demo import run
from stackctl.native import lifecycle


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


def test_wait_until_says_each_group_it_waited_for_healthy():
    progress, out = startup_progress(itertools.count())
    for group in lifecycle.CONTROL_PLANE:
        progress.starting(group)
    answers = iter([False, True])
    lifecycle.wait_until("api-server and jobs", lambda: next(answers), NoProcessFails(), lifecycle.CONTROL_PLANE,
                         progress)
    assert [line.split()[:2] for line in out.getvalue().splitlines()[4:]] == [
        [group, "healthy"] for group in lifecycle.CONTROL_PLANE]


def test_no_control_plane_program_is_healthy_while_the_api_server_does_not_answer():
    assert lifecycle.control_plane_healthy(["api-server"]) == []


def test_control_plane_programs_are_healthy_as_the_health_document_says():
    assert lifecycle.control_plane_healthy(["dag_processor", "metadatabase"]) == ["api-server", "scheduler",
                                                                                  "triggerer"]
    assert lifecycle.control_plane_healthy([]) == list(lifecycle.CONTROL_PLANE)


def test_a_pool_is_healthy_when_every_worker_of_it_answers():
    hostnames = {"worker-light": ["light-1@h", "light-2@h"], "worker-heavy": ["heavy-1@h"]}
    assert lifecycle.pools_answering(hostnames, ["light-2@h"]) == ["worker-heavy"]
    assert lifecycle.pools_answering(hostnames, []) == ["worker-light", "worker-heavy"]


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
