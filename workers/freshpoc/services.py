"""The FreshPoC reference services, by name and role: the one list every other part reads.

services/freshpoc runs one process per service; FreshPoC_E2E runs one stage per job service, in this
order, through the service's Airflow connection; stackctl's model gives each a process and derives
its connection (stackctl/model/settings.py), and the platform database to those that use it. Each
one's port is configuration (airflow/config.yaml, ports.freshpoc_<name>; a config without it is
refused). No third-party import: the DAG file imports this at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    name: str
    # The FreshPoC_E2E task that runs this service's job. None: no job routes, so no token either.
    stage: str | None
    # Reads or writes the lineage graph in the platform database.
    uses_db: bool

    @property
    def jobs(self) -> bool:
        """Has job routes (POST /api/v1/jobs), behind the freshpoc_token."""
        return self.stage is not None

    @property
    def conn_id(self) -> str:
        """Its Airflow connection's id, which is also its port's name in config.yaml."""
        return f"freshpoc_{self.name}"


SERVICES = (
    Service("ingestion", stage="ingestion_trigger", uses_db=False),  # fetches a dbt repository into storage
    Service("miner", stage="miner_run", uses_db=False),              # parses the project into a lineage graph
    Service("analyzer", stage="analyzer_run", uses_db=False),        # lineage metrics
    Service("writer", stage="writer_apply", uses_db=True),           # upserts the graph into the database
    Service("query", stage=None, uses_db=True),                      # lineage queries over the stored graph
    Service("reporting", stage="report_generate", uses_db=True),     # the HTML report, into storage
)
BY_NAME = {service.name: service for service in SERVICES}
# The pipeline, in order: FreshPoC_E2E's stages.
JOB_SERVICES = tuple(service for service in SERVICES if service.jobs)
