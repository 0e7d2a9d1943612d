"""statsd_exporter's glob mappings: a StatsD name to a Prometheus name and labels."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

_TEMPLATE = re.compile(r"\$\{?(\d+)\}?")


@dataclass(frozen=True)
class Mapped:
    name: str
    labels: dict[str, str]
    observer_type: str


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern
    name: str
    labels: dict[str, str]
    observer_type: str
    drop: bool


def _glob(match: str) -> re.Pattern:
    return re.compile("^" + "([^.]+)".join(re.escape(part) for part in match.split("*")) + "$")


def _expand(template: str, groups: tuple[str, ...]) -> str:
    return _TEMPLATE.sub(lambda m: groups[int(m.group(1)) - 1], template)


class Mapper:
    def __init__(self, config: dict):
        defaults = config.get("defaults", {})
        if defaults.get("match_type", "glob") != "glob":
            raise ValueError("only glob mappings are supported")
        self.default_observer = defaults.get("observer_type", "summary")
        self.rules = []
        for rule in config.get("mappings", []):
            if rule.get("match_type", "glob") != "glob":
                raise ValueError(f"mapping {rule['match']}: only glob mappings are supported")
            self.rules.append(_Rule(
                pattern=_glob(rule["match"]), name=rule.get("name", ""), labels=rule.get("labels", {}),
                observer_type=rule.get("observer_type", self.default_observer), drop=rule.get("action") == "drop",
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
                              rule.observer_type)
        return Mapped(re.sub(r"[^a-zA-Z0-9_]", "_", statsd_name), {}, self.default_observer)
