"""uv's version, read from its one owner: pyproject.toml's [tool.uv] required-version.

uv itself enforces that setting: in this repository (`make lock`, setup.sh's `uv pip sync`) any other
version refuses to run. The ansible render reads it here (airflow_uv_version); airflow/setup.sh and
airflow/Dockerfile, which run before any virtual environment exists, run this file with the system
python3 (`python3 airflow/stackctl/model/toolchain.py` prints it), so it imports the standard library only.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


def uv_version(pyproject: Path = PYPROJECT) -> str:
    """The exact version, X.Y.Z: every install pins it, so the owner must too."""
    required = tomllib.loads(pyproject.read_text())["tool"]["uv"]["required-version"]
    pinned = re.fullmatch(r"==(\d+\.\d+\.\d+)", required)
    if pinned is None:
        raise ValueError(f"{pyproject}: [tool.uv] required-version must pin one version (==X.Y.Z), got {required!r}")
    return pinned.group(1)


if __name__ == "__main__":
    print(uv_version())
