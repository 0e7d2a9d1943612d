"""supervisord's spelling of a process's environment, for the native stack's programs and ansible's."""

from __future__ import annotations


def supervisor_environment(env: dict[str, str]) -> str:
    """supervisord's environment= value: % doubled (its expansion), JSON values whole in single quotes."""
    def quoted(value: str) -> str:
        value = value.replace("%", "%%")
        return f"'{value}'" if '"' in value else f'"{value}"'

    return ",".join(f"{key}={quoted(value)}" for key, value in env.items())
