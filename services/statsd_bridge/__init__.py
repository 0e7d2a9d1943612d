"""The native stand-in for prom/statsd-exporter: StatsD in over UDP, Prometheus metrics out.

statsd_exporter has no Debian or PyPI package, so the native stack runs this bridge with the
same mapping file (monitoring/statsd/mapping.yml). It implements the part of
statsd_exporter's semantics that the mapping uses, pinned by tests:
- glob matching: `*` matches one whole dot-separated component; the first matching rule wins;
- `$1`, `$2`... in a rule's name and labels take the components `*` matched;
- counters add `value / sample rate`, gauges set (or move with a `+`/`-` sign), timers are
  observed in seconds (StatsD sends milliseconds) into a histogram;
- a name no rule matches is exposed with every character outside [a-zA-Z0-9_] turned into `_`.
- a rule's `ttl` (a duration: `30s`; `defaults.ttl` for rules without one and for unmatched
  names) drops a series not updated for longer, checked every second: a gauge whose sender
  died disappears instead of keeping its last value.
"""
