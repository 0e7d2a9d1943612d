"""The work of each job service: ingestion, miner, analyzer, writer, reporting.

Each stage reads the previous stage's output from object storage under the run's key and
writes its own there (the writer also writes PostgreSQL), so a stage can run again safely:

    <root>/freshpoc/runs/<run_key>/source/MANIFEST.json, source/<files>   ingestion
    <root>/freshpoc/runs/<run_key>/graph.json                             miner
    <root>/freshpoc/runs/<run_key>/metrics.json                           analyzer
    <root>/freshpoc/runs/<run_key>/report/lineage.html                    reporting
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from workers import storage
from workers.exceptions import DataError
from workers.freshpoc import confine, dbt_project, fetch, graph_store, lineage, report
from workers.freshpoc.keys import RUN_KEY, RUN_KEY_MAX

from .jobs import JobError


class StageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_key: str = Field(pattern=RUN_KEY, max_length=RUN_KEY_MAX)


class IngestRequest(StageRequest):
    repository: str = Field(min_length=1, max_length=2000)


@dataclass
class Context:
    base: object                 # ObjectStoragePath root of platform storage
    connect_db: Callable         # () -> DB-API connection to the platform database
    ingestion: confine.Policy | None = None  # what ingestion may read; the ingestion service's only


def run_dir(ctx: Context, run_key: str):
    return ctx.base / "freshpoc" / "runs" / run_key


def _data_errors(work):
    """A DataError (bad input) fails the job with 422 and its message."""
    def wrapped(request: dict, run_id: str) -> dict:
        try:
            return work(request, run_id)
        except DataError as exc:
            raise JobError(422, str(exc)) from None
    return wrapped


def check_ingest(ctx: Context, request: dict) -> None:
    try:
        fetch.check_repository(request["repository"], ctx.ingestion)
    except DataError as exc:
        raise JobError(422, str(exc)) from None


def check_previous(ctx: Context, request: dict, artifact: str) -> None:
    """Refuse a stage whose input, the earlier stage's output for this run, does not exist."""
    path = run_dir(ctx, request["run_key"]) / artifact
    if not path.exists():
        raise JobError(422, f"{artifact} is missing ({path}): run the earlier stage first")


def ingest(ctx: Context, request: dict, run_id: str) -> dict:
    files, revision = fetch.fetch(request["repository"], ctx.ingestion)
    source = run_dir(ctx, request["run_key"]) / "source"
    for relative, text in files.items():
        storage.write_bytes(source / relative, text.encode())
    repository = confine.redact(request["repository"])  # what is stored and returned has no credential
    manifest = {"repository": repository, "revision": revision, "files": sorted(files)}
    storage.write_json(source / "MANIFEST.json", manifest)  # last: the source is complete
    return {"repository": repository, "revision": revision, "files": len(files), "source": str(source)}


def mine(ctx: Context, request: dict, run_id: str) -> dict:
    source = run_dir(ctx, request["run_key"]) / "source"
    manifest = storage.read_json(source / "MANIFEST.json")
    files = {relative: storage.read_bytes(source / relative).decode() for relative in manifest["files"]}
    graph = dbt_project.parse_project(files)
    storage.write_json(run_dir(ctx, request["run_key"]) / "graph.json", graph)
    models = sorted(node["name"] for node in graph["nodes"] if node["type"] == "model")
    return {"project": graph["project"], "nodes": len(graph["nodes"]), "edges": len(graph["edges"]),
            "models": models, "warnings": graph["warnings"]}


def analyse(ctx: Context, request: dict, run_id: str) -> dict:
    graph = storage.read_json(run_dir(ctx, request["run_key"]) / "graph.json")
    metrics = lineage.analyse(graph)
    storage.write_json(run_dir(ctx, request["run_key"]) / "metrics.json", metrics)
    return {key: metrics[key] for key in ("project", "node_count", "edge_count", "max_depth", "orphans", "cycles")}


def write(ctx: Context, request: dict, run_id: str) -> dict:
    graph = storage.read_json(run_dir(ctx, request["run_key"]) / "graph.json")
    conn = ctx.connect_db()
    try:
        return graph_store.upsert_graph(conn, graph, run_id)
    finally:
        conn.close()


def render_report(ctx: Context, request: dict, run_id: str) -> dict:
    """The report of the graph as the writer stored it, with the analyzer's metrics."""
    metrics = storage.read_json(run_dir(ctx, request["run_key"]) / "metrics.json")
    conn = ctx.connect_db()
    try:
        graph = graph_store.load_graph(conn, metrics["project"])
    finally:
        conn.close()
    if graph is None:
        raise JobError(422, f"project {metrics['project']!r} is not in the graph store: run the writer first")
    path = run_dir(ctx, request["run_key"]) / "report" / "lineage.html"
    storage.write_bytes(path, report.render(graph, metrics, run_id).encode())
    models = sorted(node["name"] for node in graph["nodes"] if node["type"] == "model")
    return {"project": metrics["project"], "report": str(path), "models": models}


def redact_ingest(request: dict) -> dict:
    return {**request, "repository": confine.redact(request["repository"])}


@dataclass(frozen=True)
class JobService:
    request_model: type[StageRequest]
    check: Callable[[Context, dict], None]   # refuses bad input with JobError before a job starts
    work: Callable[[Context, dict, str], dict]
    redact: Callable[[dict], dict] = dict    # the request as its job record stores it: no credential


JOB_SERVICES = {
    "ingestion": JobService(IngestRequest, check_ingest, ingest, redact_ingest),
    "miner": JobService(StageRequest, lambda ctx, r: check_previous(ctx, r, "source/MANIFEST.json"), mine),
    "analyzer": JobService(StageRequest, lambda ctx, r: check_previous(ctx, r, "graph.json"), analyse),
    "writer": JobService(StageRequest, lambda ctx, r: check_previous(ctx, r, "graph.json"), write),
    "reporting": JobService(StageRequest, lambda ctx, r: check_previous(ctx, r, "metrics.json"), render_report),
}


def job_work(service: str, ctx: Context) -> Callable[[dict, str], dict]:
    work = JOB_SERVICES[service].work
    return _data_errors(lambda request, run_id: work(ctx, request, run_id))
