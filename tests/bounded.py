"""A command with a time bound that ends everything it started, not only itself.

subprocess.run kills only its child at the timeout; ansible-playbook's forked workers then live on
(one was found running 20 minutes after its play timed out). Here the command runs in a session of
its own, and the timeout kills that whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess

# How much of a timed-out command's output its error shows: where it was when time ran out.
TAIL_CHARS = 4000


class TimedOut(subprocess.TimeoutExpired):
    """TimeoutExpired whose message ends with the tail of what the command printed."""

    def __str__(self) -> str:
        return (f"{super().__str__()}; its output ended with:\n{(self.stdout or '')[-TAIL_CHARS:]}"
                f"\n{(self.stderr or '')[-TAIL_CHARS:]}")


def run(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs), and on the timeout
    SIGKILL to the command's whole process group before TimedOut is raised with everything it printed."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()  # the output read before the timeout is kept
            raise TimedOut(argv, timeout, output=stdout, stderr=stderr) from None
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
