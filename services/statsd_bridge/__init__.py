"""The native stand-in for prom/statsd-exporter: StatsD in over UDP, Prometheus metrics out.

statsd_exporter has no Debian or PyPI package, so the native stack runs this bridge with the
same mapping file (monitoring/statsd/mapping.yml). It implements the part of
statsd_exporter's semantics that the mapping uses, pinned by tests:
- glob matching: `*` matches one whole dot-separated component; the first matching rule wins;
- `$1`, `$2`... in a rule's name and labels take the components `*` matched;
- counters add `value / sample rate`, gauges set (or move with a `+`/`-` sign), timers are
  observed in seconds (StatsD sends milliseconds) into a histogram;
- `match_type: regex` rules are tried after every glob rule, in order; a regex searches the name
  (anchor it with ^...$) and its templates expand as Go's do (`${1}`; `$1_x` is the group `1_x`);
- `action: drop` drops the name; every rule needs a `name`, and a glob's `*` is a whole component
  (statsd_exporter refuses to load the file otherwise, so the bridge does too);
- `scale` multiplies every value (after a timer's milliseconds became seconds);
- statsd_exporter's own counters: statsd_exporter_events_actions_total{action="map"|"drop"} and
  statsd_exporter_events_unmapped_total. The bridge also keeps the last 100 dropped names,
  logs each once and serves them as JSON at /dropped next to /metrics;
- a negative counter increment (a StatsD decrement) is refused, as statsd_exporter does;
- a name no rule matches is exposed with every character outside [a-zA-Z0-9_] turned into `_`
  (monitoring/statsd/mapping.yml ends with a catch-all drop rule, so none is);
- a rule's `ttl` (a duration: `30s`; `defaults.ttl` for rules without one and for unmatched
  names) drops a series not updated for longer, checked every second: a gauge whose sender
  died disappears instead of keeping its last value.
"""
