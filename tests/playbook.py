"""ansible-playbook as the tests run it: from the repository's ansible/, with a controller
environment of the test's own (no operator's ~/.ansible or ANSIBLE_* settings), under bounded.run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stackctl.model import settings
from tests import bounded

ANSIBLE = settings.REPO / "ansible"


def run(inventory: Path, playbook: str, *args: str, timeout: float, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess:
    """The play, asserted to succeed; ansible's home and its log (each play's tasks and timings as they
    run: `tail -f` it) beside the inventory. env: more ANSIBLE_* settings."""
    environment = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "ANSIBLE_HOME": str(inventory.parent / "ansible-home"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOG_PATH": str(inventory.parent / "ansible.log"),
        **(env or {}),
    }
    result = bounded.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), playbook, *args],
                         timeout=timeout, cwd=ANSIBLE, env=environment)
    assert result.returncode == 0, (f"{playbook} failed:\n{failures(result.stdout)}\n"
                                    f"the play's end:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return result


def failures(stdout: str) -> str:
    """Each failed task's header and its host's message: a play's end often shows only the plays that ran
    on after one host failed."""
    found, task = [], ""
    for line in stdout.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line
        elif line.startswith(("fatal:", "failed:")):
            found.append(f"{task}\n{line[:3000]}")
    return "\n".join(found) or "(no task reported fatal: the play's end below says why)"
