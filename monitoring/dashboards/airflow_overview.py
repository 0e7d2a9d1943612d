"""Airflow overview: component health, DAG runs, tasks, scheduler, executor and pools, errors."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from .panels import graph, heartbeat_rate, label_variable, mean_over_range, prom, single

UID = "airflow-overview"
DAG = 'dag_id=~"$dag_id"'
FINISHED = f'sum by (dag_id) (increase(airflow_ti_finish_total{{state=~"success|failed", {DAG}}}[$__range]))'


def build() -> Dashboard:
    return (
        Dashboard("Airflow overview").uid(UID).tags(["airflow", "controlplane"]).refresh("30s")
        .time("now-6h", "now")
        .with_variable(label_variable("dag_id", "airflow_dagrun_duration_seconds_count", "dag_id", label_text="DAG"))
        .with_row(Row("Components"))
        .with_panel(single("Scheduler heartbeats/s", heartbeat_rate("airflow_scheduler_heartbeat_total"),
                           description="0 means the scheduler is down (AirflowSchedulerDown)."))
        .with_panel(single("API server up", prom('min(probe_success{job="api-server"})'),
                           description="The blackbox exporter's health probe: 0 means down (AirflowApiServerDown)."))
        .with_panel(single("Dag-processor heartbeats/s", heartbeat_rate("airflow_dag_processor_heartbeat_total")))
        .with_panel(single("Triggerer heartbeats/s", heartbeat_rate("airflow_triggerer_heartbeat_total")))
        .with_panel(single("DAG import errors", prom("max(airflow_dag_processing_import_errors)")))
        .with_panel(single("DAGs parsed", prom("max(airflow_dagbag_size)")))
        .with_panel(single("Alerts firing", prom('count(ALERTS{alertstate="firing"}) or vector(0)')))
        .with_row(Row("DAG runs"))
        .with_panel(graph(
            "DAG run success rate", prom(
                f'sum by (dag_id) (increase(airflow_dagrun_duration_seconds_count{{state="success", {DAG}}}[$__range]))'
                f" / sum by (dag_id) (increase(airflow_dagrun_duration_seconds_count{{{DAG}}}[$__range]))",
                "{{dag_id}}"),
            unit="percentunit", description="Finished runs that succeeded, over the dashboard's time range."))
        .with_panel(graph(
            "DAG runs finished, by outcome", prom(
                f"sum by (dag_id, state) (increase(airflow_dagrun_duration_seconds_count{{{DAG}}}[$__rate_interval]))",
                "{{dag_id}} {{state}}"), bars=True))
        .with_panel(graph(
            "Mean DAG run duration",
            prom(mean_over_range("airflow_dagrun_duration_seconds", "dag_id, state", DAG), "{{dag_id}} {{state}}"),
            unit="s"))
        .with_row(Row("Tasks"))
        .with_panel(graph(
            "Task instances finished, by state", prom(
                f"sum by (state) (increase(airflow_ti_finish_total{{{DAG}}}[$__rate_interval]))", "{{state}}"),
            stacked=True, bars=True))
        .with_panel(graph(
            "Task failure ratio", prom(
                # A DAG without failures has no failed series: count it as 0, not as missing.
                f'(sum by (dag_id) (increase(airflow_ti_finish_total{{state="failed", {DAG}}}[$__range]))'
                f" or 0 * {FINISHED})"
                f" / {FINISHED}",
                "{{dag_id}}"), unit="percentunit"))
        .with_panel(graph(
            "Slowest tasks (mean duration)",
            prom(f"topk(10, {mean_over_range('airflow_task_duration_seconds', 'dag_id, task_id', DAG)})",
                 "{{dag_id}}.{{task_id}}"), unit="s"))
        .with_panel(graph(
            "Time queued before running (mean)",
            prom(f"topk(10, {mean_over_range('airflow_task_scheduled_duration_seconds', 'dag_id, task_id', DAG)})",
                 "{{dag_id}}.{{task_id}}"), unit="s"))
        .with_row(Row("Scheduler, executor and pools"))
        .with_panel(graph(
            "Scheduler loop duration (mean)", prom(
                "rate(airflow_scheduler_loop_duration_seconds_sum[$__rate_interval])"
                " / rate(airflow_scheduler_loop_duration_seconds_count[$__rate_interval])", "loop"), unit="s"))
        .with_panel(graph(
            "Executor slots", prom('airflow_executor_open_slots{executor="all"}', "open"),
            prom('airflow_executor_queued_tasks{executor="all"}', "queued"),
            prom('airflow_executor_running_tasks{executor="all"}', "running")))
        .with_panel(graph(
            "Airflow pool slots", prom("airflow_pool_running_slots", "{{pool}} running"),
            prom("airflow_pool_queued_slots", "{{pool}} queued"), prom("airflow_pool_open_slots", "{{pool}} open")))
        .with_panel(graph("Tasks starving for a pool slot", prom("airflow_pool_starving_tasks", "{{pool}}")))
        .with_row(Row("Errors"))
        .with_panel(graph(
            "Executor and worker errors",
            # Airflow emits these counters only once something goes wrong: absent means zero.
            prom("sum(increase(airflow_celery_execute_command_failure_total[$__rate_interval])) or vector(0)",
                 "celery execute_command failures"),
            prom("sum(increase(airflow_celery_task_timeout_error_total[$__rate_interval])) or vector(0)",
                 "celery publish timeouts"),
            prom("sum(increase(airflow_task_instances_without_heartbeats_killed_total[$__rate_interval])) or vector(0)",
                 "tasks killed without heartbeat"), bars=True))
        .with_panel(graph(
            "DAG file parse time", prom("max(airflow_dag_processing_total_parse_time_seconds)", "all files"), unit="s"))
        .with_panel(graph(
            "Slowest DAG files to parse (mean)",
            prom(f"topk(10, {mean_over_range('airflow_dag_processing_last_duration_seconds', 'bundle, file')})",
                 "{{bundle}}/{{file}}"),
            unit="s", description="Mean parse time of each DAG file over the dashboard's time range: "
                                  "the dag-processor parses every file again each min_file_process_interval."))
    )
