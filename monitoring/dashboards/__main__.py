"""Write every dashboard's JSON: python -m monitoring.dashboards [--check]."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from . import airflow_logs, airflow_overview, celery_pools, data_quality, model_training, reference_services

DASHBOARDS = (airflow_overview, celery_pools, data_quality, model_training, reference_services, airflow_logs)
OUTPUT = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"


def render() -> dict[str, str]:
    """File name -> JSON text of each dashboard."""
    return {
        f"{module.UID}.json": json.dumps(module.build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        for module in DASHBOARDS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.dashboards")
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is not up to date")
    args = parser.parse_args(argv)
    rendered = render()
    stale = [name for name, text in rendered.items()
             if not (OUTPUT / name).exists() or (OUTPUT / name).read_text() != text]
    if args.check:
        for name in stale:
            print(f"{OUTPUT / name} is not what monitoring/dashboards generates: run make dashboards", file=sys.stderr)
        return 1 if stale else 0
    for name in stale:
        (OUTPUT / name).write_text(rendered[name])
        print(f"wrote {OUTPUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
