"""The FreshPoC services have one owner (workers/freshpoc/services.py): the services' command line, their
job implementations and routes, and the deployment model's processes follow its names and roles, and no
other file types a list of them. FreshPoC_E2E's stages: tests/unit/dags/test_freshpoc_dag.py; config.yaml's
ports and the derived connections: tests/unit/stackctl/model/test_settings.py.
"""

import re

import pytest

from services.freshpoc import stages
from services.freshpoc.__main__ import command_line
from services.freshpoc.app import create_app
from services.freshpoc.faults import Faults
from stackctl.model import control_plane, processes, settings
from stackctl.render import ansible
from tests.secret_scan import tracked_files
from workers import storage
from workers.freshpoc.services import BY_NAME, JOB_SERVICES, SERVICES

OWNER = "workers/freshpoc/services.py"
# Two service names quoted side by side, as a tuple or list of them is typed.
_NAME = "|".join(BY_NAME)
LISTED = re.compile(rf"""(["'])(?:{_NAME})\1\s*,\s*(["'])(?:{_NAME})\2""")


def test_the_command_line_takes_every_service_and_no_other():
    parser = command_line()
    assert [parser.parse_args([service.name, "--port", "1"]).service for service in SERVICES] == list(BY_NAME)
    with pytest.raises(SystemExit):
        parser.parse_args(["lineage", "--port", "1"])


def test_exactly_the_job_services_have_a_job_and_job_routes(tmp_path):
    assert set(stages.JOB_SERVICES) == {service.name for service in JOB_SERVICES}
    ctx = stages.Context(base=storage.root(f"file://{tmp_path}/objects"), connect_db=None)
    for service in SERVICES:
        paths = {route.path for route in create_app(service.name, ctx, Faults(), None, "job-token").routes}
        assert ("/api/v1/jobs" in paths) is service.jobs, service.name


def test_the_model_runs_each_service_with_the_token_and_database_of_its_role():
    source = settings.load_source()
    model = {p.name: p for p in processes.model(source, ansible.ansible_target(source))
             if p.name.startswith("freshpoc-")}
    assert set(model) == {f"freshpoc-{service.name}" for service in SERVICES}
    for service in SERVICES:
        process = model[f"freshpoc-{service.name}"]
        assert process.listens == (service.conn_id,)
        assert ("--token-file" in process.argv) is ("freshpoc_token" in process.secrets) is service.jobs
        assert (process.connections == ("platform_db",)) is ("postgres" in process.reaches) is service.uses_db
    assert tuple(service.conn_id for service in JOB_SERVICES) == control_plane.FRESHPOC_JOB_CONNECTIONS


def test_no_other_file_lists_the_services():
    listed = {str(path.relative_to(settings.REPO)) for path in tracked_files(settings.REPO)
              if LISTED.search(path.read_text(errors="replace"))}
    assert listed == set(), f"import the FreshPoC services from {OWNER}"


def test_the_scan_finds_a_typed_list():
    names = tuple(BY_NAME)  # not typed here, or the scan would find this file
    assert LISTED.search(f"SERVICES = {names!r}") and LISTED.search(f"uses_db = service in {list(names[3:5])}")
