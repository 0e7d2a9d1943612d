"""statsd_exporter's glob mappings: a StatsD name to a Prometheus name and labels."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

_TEMPLATE = re.compile(r"\$\{?(\d+)\}?")
# A Go duration (statsd_exporter reads `ttl` as a time.Duration): 30s, 1m30s, 500ms, 1h.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Mapped:
    name: str
    labels: dict[str, str]
    observer_type: str
    ttl: float = 0.0  # seconds without an update after which the series is dropped; 0: never


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern
    name: str
    labels: dict[str, str]
    observer_type: str
    drop: bool
    ttl: float


def _glob(match: str) -> re.Pattern:
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


class Mapper:
    def __init__(self, config: dict):
        defaults = config.get("defaults", {})
        if defaults.get("match_type", "glob") != "glob":
            raise ValueError("only glob mappings are supported")
        self.default_observer = defaults.get("observer_type", "summary")
        self.default_ttl = duration_s(defaults.get("ttl"))
        self.rules = []
        for rule in config.get("mappings", []):
            if rule.get("match_type", "glob") != "glob":
                raise ValueError(f"mapping {rule['match']}: only glob mappings are supported")
            self.rules.append(_Rule(
                pattern=_glob(rule["match"]), name=rule.get("name", ""), labels=rule.get("labels", {}),
                observer_type=rule.get("observer_type", self.default_observer), drop=rule.get("action") == "drop",
                # As statsd_exporter: a rule without a ttl (or with 0) takes the default one.
                ttl=duration_s(rule.get("ttl")) or self.default_ttl,
            ))

    @classmethod
    def load(cls, path: Path) -> Mapper:
        return cls(yaml.safe_load(path.read_text()))

    def map(self, statsd_name: str) -> Mapped | None:
        """The Prometheus name and labels for a StatsD name; None when a rule drops it."""
        for rule in self.rules:
            found = rule.pattern.match(statsd_name)
            if found:
                if rule.drop:
                    return None
                groups = found.groups()
                return Mapped(_expand(rule.name, groups),
                              {key: _expand(value, groups) for key, value in rule.labels.items()},
                              rule.observer_type, rule.ttl)
        return Mapped(re.sub(r"[^a-zA-Z0-9_]", "_", statsd_name), {}, self.default_observer, self.default_ttl)
