"""Filters computed as the native stack and compose compute them, from the deployment model's code.

- `web_password_hash`: the bcrypt hash in the web config of Prometheus, Alertmanager and the
  Pushgateway (airflow/stackctl/render/web_auth.py). Its salt is derived from the password, so an
  unchanged vault renders an unchanged file and a second run reports changed=0; Ansible's own
  password_hash filter would need passlib and a salt.
- `supervisor_environment`: a dict as supervisord's environment= value (render/supervisord.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

# stackctl is in the repository's airflow/ folder, next to ansible/; its model reads the task library
# (workers/) at the repository's root, as every process of the deployment does (its PYTHONPATH).
REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "airflow")]

from stackctl.render.supervisord import supervisor_environment  # noqa: E402
from stackctl.render.web_auth import password_hash  # noqa: E402


class FilterModule:
    def filters(self):
        return {"web_password_hash": password_hash, "supervisor_environment": supervisor_environment}
