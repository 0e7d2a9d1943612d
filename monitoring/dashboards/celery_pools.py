"""Celery pools and queues: workers and processes per pool, busy slots, queue backlog, throughput, the machine."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from .panels import graph, prom, single

UID = "celery-pools"


def build() -> Dashboard:
    return (
        Dashboard("Celery pools and queues").uid(UID).tags(["celery", "controlplane"]).refresh("30s")
        .time("now-3h", "now")
        .with_row(Row("Pools"))
        .with_panel(graph(
            "Workers online vs expected, per pool",
            prom("controlplane:worker_pool_online_workers", "{{pool}} online"),
            prom("controlplane:worker_pool_expected_workers", "{{pool}} expected"),
            description="Expected comes from each pool's size in airflow/config.yaml (CeleryWorkerPoolDown)."))
        .with_panel(graph(
            "Processes per pool: desired, online, max",
            prom("controlplane:worker_pool_desired_processes", "{{pool}} desired"),
            prom("controlplane:worker_pool_online_processes", "{{pool}} online"),
            prom("controlplane:worker_pool_online_max_processes", "{{pool}} max online"),
            prom("controlplane:worker_pool_max_processes", "{{pool}} max configured"),
            description="Desired: task instances queued or running on the pool's queue, one process each (the "
                        "metadata database). Online: processes the autoscaled workers run now. Max online: what "
                        "they can grow to; max configured: instances x max_processes. Desired above max online "
                        "for 10 minutes is WorkerPoolAtCapacity."))
        .with_panel(graph(
            "Busy slots per worker", prom("flower_worker_number_of_currently_executing_tasks", "{{worker}}"),
            stacked=True,
            description="Tasks running on each worker, one per process; a worker grows to its pool's max_processes."))
        .with_panel(graph(
            "Queue length", prom('redis_key_size{job="redis"}', "{{key}}"),
            description="Tasks waiting in Redis for a worker of the queue's pool (CeleryQueueBacklog)."))
        .with_panel(graph(
            "Tasks finished per worker",
            prom('sum by (worker, type) (rate(flower_events_total{type=~"task-succeeded|task-failed"}'
                 "[$__rate_interval]))", "{{worker}} {{type}}"), unit="ops"))
        .with_panel(graph(
            "Task runtime p90 per worker", prom(
                "histogram_quantile(0.9, sum by (le, worker) (increase(flower_task_runtime_seconds_bucket[$__range])))",
                "{{worker}}"), unit="s"))
        .with_panel(graph(
            "Prefetched tasks per worker", prom("sum by (worker) (flower_worker_prefetched_tasks)", "{{worker}}"),
            description="Heavy workers prefetch nothing (prefetch 1, one slot): a task here waits behind another."))
        .with_row(Row("Broker and machine"))
        .with_panel(single("Redis memory", prom("redis_memory_used_bytes"), unit="bytes"))
        .with_panel(single("Redis clients", prom("redis_connected_clients")))
        .with_panel(single("Broker up", prom("redis_up")))
        .with_panel(single("CPU busy", prom(
            '1 - avg(rate(node_cpu_seconds_total{mode="idle"}[$__rate_interval]))'), unit="percentunit"))
        .with_panel(single("Memory available", prom("node_memory_MemAvailable_bytes"), unit="bytes"))
        .with_panel(single("Load (1m)", prom("node_load1")))
        .with_panel(graph(
            "CPU by mode", prom(
                'sum by (mode) (rate(node_cpu_seconds_total{mode!="idle"}[$__rate_interval]))', "{{mode}}"),
            stacked=True, description="Two cores: heavy training competes with everything else."))
        .with_panel(graph(
            "PostgreSQL connections by database", prom('sum by (datname) (pg_stat_activity_count)', "{{datname}}")))
    )
