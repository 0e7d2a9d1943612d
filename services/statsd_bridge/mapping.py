"""statsd_exporter's mappings: a StatsD name to a Prometheus name and labels, or a drop."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

# A glob rule's name and label templates (statsd_exporter's FSM formatter): $1, ${1}.
_TEMPLATE = re.compile(r"\$\{?(\d+)\}?")
# A regex rule's templates follow Go's Regexp.Expand: $name or ${name}, name the longest run of
# letters, digits and _ (so $1_total is the group "1_total", empty: write ${1}_total); $$ is $.
_GO_TEMPLATE = re.compile(r"\$(?:\$|\{(\w+)\}|(\w+))")
# statsd_exporter refuses to load a glob whose components are not `*` or a plain name: a `*`
# inside a component (`operator_successes_*`) takes a regex rule.
_STATSD_COMPONENT = r"[a-zA-Z_](-?[a-zA-Z0-9_])*"
_GLOB_LINE = re.compile(rf"^(\*\.|{_STATSD_COMPONENT}\.)+(\*|{_STATSD_COMPONENT})$")
# A Go duration (statsd_exporter reads `ttl` as a time.Duration): 30s, 1m30s, 500ms, 1h.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Mapped:
    name: str
    labels: dict[str, str]
    observer_type: str
    ttl: float = 0.0  # seconds without an update after which the series is dropped; 0: never
    scale: float = 1.0  # statsd_exporter's `scale`: every value is multiplied by it
    matched: bool = True  # False: no rule matched, the name is exposed sanitised (unmapped)


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern
    regex: bool
    name: str
    labels: dict[str, str]
    observer_type: str
    drop: bool
    ttl: float
    scale: float


def _glob(match: str) -> re.Pattern:
    if not _GLOB_LINE.match(match):
        raise ValueError(f"invalid match: {match} (a glob's `*` is a whole component; use match_type: regex)")
    return re.compile("^" + "([^.]+)".join(re.escape(part) for part in match.split("*")) + "$")


def duration_s(value: object) -> float:
    """A Go duration string (`30s`, `1m30s`) in seconds; 0 (or unset) is no ttl."""
    if value is None or value == 0 or value == "0":
        return 0.0
    text = value if isinstance(value, str) else ""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"ttl {value!r}: write a duration such as 30s or 1m30s")
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def _expand(template: str, groups: tuple[str, ...]) -> str:
    return _TEMPLATE.sub(lambda m: groups[int(m.group(1)) - 1], template)


def _expand_go(template: str, found: re.Match) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name is None:
            return "$"
        try:
            value = found.group(int(name) if name.isdigit() else name)
        except IndexError:  # no such group: empty, as in Go
            return ""
        return value or ""
    return _GO_TEMPLATE.sub(one, template)


class Mapper:
    def __init__(self, config: dict):
        defaults = config.get("defaults", {})
        default_type = defaults.get("match_type", "glob")
        if default_type not in ("glob", "regex"):
            raise ValueError(f"match_type {default_type!r}: glob or regex")
        self.default_observer = defaults.get("observer_type", "summary")
        self.default_ttl = duration_s(defaults.get("ttl"))
        self.rules = []
        for index, rule in enumerate(config.get("mappings", [])):
            if not rule.get("name"):  # statsd_exporter refuses the file, even for a drop rule
                raise ValueError(f"line {index}: metric mapping didn't set a metric name")
            match_type = rule.get("match_type", default_type)
            if match_type not in ("glob", "regex"):
                raise ValueError(f"mapping {rule['match']}: match_type {match_type!r}: glob or regex")
            action = rule.get("action", "map")
            if action not in ("map", "drop"):
                raise ValueError(f"mapping {rule['match']}: action {action!r}: map or drop")
            self.rules.append(_Rule(
                pattern=_glob(rule["match"]) if match_type == "glob" else re.compile(rule["match"]),
                regex=match_type == "regex", name=rule["name"], labels=rule.get("labels", {}),
                observer_type=rule.get("observer_type", self.default_observer), drop=action == "drop",
                # As statsd_exporter: a rule without a ttl (or with 0) takes the default one.
                ttl=duration_s(rule.get("ttl")) or self.default_ttl,
                scale=float(rule.get("scale", 1.0)),
            ))
        # statsd_exporter tries every glob rule (in order) before any regex rule (in order).
        self.ordered = [r for r in self.rules if not r.regex] + [r for r in self.rules if r.regex]

    @classmethod
    def load(cls, path: Path) -> Mapper:
        return cls(yaml.safe_load(path.read_text()))

    def map(self, statsd_name: str) -> Mapped | None:
        """The Prometheus name and labels for a StatsD name; None when a rule drops it."""
        for rule in self.ordered:
            # A regex rule searches the name (Go's FindStringSubmatchIndex): anchor it to match all.
            found = rule.pattern.search(statsd_name) if rule.regex else rule.pattern.match(statsd_name)
            if found:
                if rule.drop:
                    return None
                if rule.regex:
                    name = _expand_go(rule.name, found)
                    labels = {key: _expand_go(value, found) for key, value in rule.labels.items()}
                else:
                    groups = found.groups()
                    name = _expand(rule.name, groups)
                    labels = {key: _expand(value, groups) for key, value in rule.labels.items()}
                return Mapped(name, labels, rule.observer_type, rule.ttl, rule.scale)
        return Mapped(re.sub(r"[^a-zA-Z0-9_]", "_", statsd_name), {}, self.default_observer, self.default_ttl,
                      matched=False)
