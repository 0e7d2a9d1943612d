"""Panel builders shared by the dashboards: one datasource per query language, consistent units."""

from __future__ import annotations

from grafana_foundation_sdk.builders import logs, loki, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig
from grafana_foundation_sdk.builders.dashboard import QueryVariable
from grafana_foundation_sdk.models.common import BigValueGraphMode, GraphDrawStyle, StackingMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

# The uids under which monitoring/grafana/provisioning/datasources provisions the data sources.
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
LOKI = DataSourceRef(type_val="loki", uid="loki")


def prom(expr: str, legend: str = "", *, instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).datasource(PROMETHEUS)
    if legend:
        query = query.legend_format(legend)
    return query.instant() if instant else query.range()


def mean_over_range(histogram: str, by: str, selector: str = "") -> str:
    """The mean of a histogram's observations over the dashboard's time range, per `by` labels."""
    return (f"sum by ({by}) (increase({histogram}_sum{{{selector}}}[$__range]))"
            f" / sum by ({by}) (increase({histogram}_count{{{selector}}}[$__range]))")


def heartbeat_rate(counter: str) -> prometheus.Dataquery:
    return prom(f"sum(rate({counter}[$__rate_interval]))")


def graph(title: str, *queries: prometheus.Dataquery, unit: str = "short", description: str = "",
          width: int = 12, stacked: bool = False, bars: bool = False) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).unit(unit).datasource(PROMETHEUS).span(width).height(8)
             .fill_opacity(10).line_width(1))
    if description:
        panel = panel.description(description)
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL))
    if bars:
        panel = panel.draw_style(GraphDrawStyle.BARS)
    for ref, query in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(query.ref_id(ref))
    return panel


def single(title: str, query: prometheus.Dataquery, *, unit: str = "short", description: str = "",
           width: int = 4) -> stat.Panel:
    panel = (stat.Panel().title(title).unit(unit).datasource(PROMETHEUS).span(width).height(4)
             .graph_mode(BigValueGraphMode.AREA).with_target(query.ref_id("A")))
    return panel.description(description) if description else panel


def listing(title: str, expr: str, *, unit: str = "short", width: int = 24) -> table.Panel:
    """A table of the query's current series, one row per label set."""
    query = prom(expr, instant=True).format(PromQueryFormat.TABLE).ref_id("A")
    return table.Panel().title(title).unit(unit).datasource(PROMETHEUS).span(width).height(8).with_target(query)


def label_variable(name: str, metric: str, label: str, *, label_text: str) -> QueryVariable:
    """A multi-select variable over a label's values, "All" by default (regex .*)."""
    return (QueryVariable(name).label(label_text).datasource(PROMETHEUS)
            .query(f"label_values({metric}, {label})").definition(f"label_values({metric}, {label})")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True).all_value(".*"))


def log_query(expr: str, legend: str = "") -> loki.Dataquery:
    query = loki.Dataquery().expr(expr).datasource(LOKI).ref_id("A")
    return query.legend_format(legend) if legend else query


def log_lines(title: str, expr: str, width: int = 24) -> logs.Panel:
    return (logs.Panel().title(title).datasource(LOKI).span(width).height(14).show_time(True)
            .wrap_log_message(True).enable_log_details(True).with_target(log_query(expr)))


def log_graph(title: str, expr: str, legend: str, width: int = 24) -> timeseries.Panel:
    return (timeseries.Panel().title(title).datasource(LOKI).span(width).height(6).unit("short")
            .draw_style(GraphDrawStyle.BARS).stacking(StackingConfig().mode(StackingMode.NORMAL))
            .with_target(log_query(expr, legend)))
