"""The native stack's data, logs and configs are its user's only; the state folder stays traversable."""

import configparser
import stat

from stackctl.native import lifecycle
from stackctl.native.stack import NativeStack


def test_render_makes_every_data_log_and_config_folder_owner_only(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "logs").mkdir(mode=0o755)  # a folder of an older stack is tightened too
    stack = NativeStack.load(home)
    lifecycle.render(stack)
    folders = {path.name: stat.S_IMODE(path.stat().st_mode) for path in home.iterdir() if path.is_dir()}
    owner_only = ("objects", "logs", "airflow", "redis", "prometheus", "alertmanager", "pushgateway", "oncall", "web",
                  "secrets", "tls", "node_exporter")
    assert folders == dict.fromkeys(owner_only, 0o700)
    # PostgreSQL's unprivileged user still reaches its own folder through the state folder.
    assert stat.S_IMODE(home.stat().st_mode) == 0o755


def test_supervised_processes_create_owner_only_files(tmp_path):
    stack = NativeStack.load(tmp_path)
    lifecycle.render(stack)
    conf = configparser.RawConfigParser()
    conf.read(stack.supervisor_conf)
    assert conf["supervisord"]["umask"] == "077"
