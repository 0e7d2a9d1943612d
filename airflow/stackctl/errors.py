"""Errors that `stackctl` reports to the user.

    StackError                 anything the user must act on; printed without a traceback
    ├── PreflightError         a missing system package, a port in use, an unusable folder
    ├── ComponentFailedError   a component did not start or did not become healthy
    └── ConfigError            the configuration source is inconsistent
"""


class StackError(Exception):
    """An error with a message that names the problem and what to do."""


class PreflightError(StackError):
    pass


class ComponentFailedError(StackError):
    def __init__(self, component: str, reason: str, log_tail: str = ""):
        self.component = component
        message = f"{component} failed: {reason}"
        if log_tail:
            message += f"\n--- last lines of {component}'s log ---\n{log_tail}"
        super().__init__(message)


class ConfigError(StackError):
    pass
