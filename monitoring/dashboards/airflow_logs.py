"""Logs (Loki, shipped by Alloy in compose): task logs by DAG, task, attempt and level; container logs."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable, Row, TextBoxVariable
from grafana_foundation_sdk.models.dashboard import VariableRefresh

from .panels import LOKI, log_graph, log_lines

UID = "airflow-logs"
TASKS = '{service_name="airflow-task", dag_id=~"$dag_id", task_id=~"$task_id"}'


def loki_variable(name: str, label: str, label_text: str) -> QueryVariable:
    selector = '{service_name="airflow-task"}'
    return (QueryVariable(name).label(label_text).datasource(LOKI)
            .query(f"label_values({selector}, {label})").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True).include_all(True).all_value(".*"))


def build() -> Dashboard:
    return (
        Dashboard("Airflow logs").uid(UID).tags(["logs", "airflow", "controlplane"]).refresh("30s")
        .time("now-1h", "now")
        .with_variable(loki_variable("dag_id", "dag_id", "DAG"))
        .with_variable(loki_variable("task_id", "task_id", "Task"))
        .with_variable(TextBoxVariable("search").label("Line contains"))
        .with_row(Row("Task logs"))
        .with_panel(log_graph("Task log lines by level",
                              f"sum by (level) (count_over_time({TASKS} [$__auto]))", "{{level}}"))
        .with_panel(log_lines("Errors", f'{TASKS} | level=~"error|critical"'))
        .with_panel(log_lines("Task logs (run_id and map_index in each line's metadata)",
                              f'{TASKS} |= "$search"'))
        .with_panel(log_lines("Retried attempts", f'{TASKS} | attempt!="1"'))
        .with_row(Row("Components"))
        .with_panel(log_lines(
            "Scheduler, dag-processor, triggerer and workers",
            '{service_name=~"airflow-scheduler|airflow-dag-processor|airflow-triggerer|airflow-worker-.*"}'
            ' |= "$search"'))
    )
