"""FreshPoC_E2E: parse a dbt project into a lineage graph, analyse it, store it, report on it.

The pure logic (dbt_project, lineage, report, graph_store) is shared by the reference
services in services/freshpoc; the stage operator and its trigger run the pipeline from Airflow.
"""
