"""stackctl: run the native control plane.

    python -m stackctl [--home DIR] up [--port NAME=N ...] [--tls]   (--tls: TLS whatever config.yaml says)
    python -m stackctl [--home DIR] status | down | urls
    python -m stackctl [--home DIR] airflow ARGS...   (the airflow CLI, configured for this stack)
    python -m stackctl render compose|ansible|readme  (rewrite compose/, ansible/ or the tables of
                                                       README.md and docs/ from config.yaml: readme.py)
    python -m stackctl [--home DIR] tenant add SLUG --interactions FILE [--name NAME] [--replace] [--types T1,T2]
                                                      (onboard a tenant from CSV or Parquet: tenants.py)
    python -m stackctl [--home DIR] backup DEST        (both databases and the served models into a new
                                                       folder or s3:// prefix: backup.py)
    python -m stackctl [--home DIR] restore SRC [--force]  (replace this running stack's data with a backup)
    python -m stackctl certs issue DIR --host NAME=ADDRESS[,NAME...] ... [--ca-cert F --ca-key F]
    python -m stackctl certs rotate DIR [--new-ca] [--ca-cert F --ca-key F]
    python -m stackctl certs expiry DIR [--textfile-dir D]
                                                      (a CA and a certificate per host: certificates.py)
    python -m stackctl secrets publish [--endpoint-url URL] [--region R] [--ca-bundle F] < PAYLOAD | --from-environment
                                                      (connections and variables into Secrets Manager:
                                                       ops/secrets_manager.py)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from stackctl.errors import StackError
from stackctl.model import settings
from stackctl.model.redis_users import USERS_FILE
from stackctl.native import broker, capacity, lifecycle
from stackctl.native.stack import DEFAULT_HOME, NativeStack
from stackctl.render import ansible, compose_secrets_manager, readme
from workers.tenants import SLUG_RULE

# `render <kind>`: the committed files each renders from config.yaml, by path (a unit test fails when
# one drifts from a fresh render).
RENDERERS = {"compose": compose_secrets_manager.render_all, "ansible": ansible.render_ansible,
             "readme": readme.render_pages}


def parse_port(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"--port takes NAME=NUMBER, got {text!r}")
    return name, int(value)


def print_urls(stack: NativeStack) -> None:
    user = stack.source["admin_user"]
    secret = stack.secret_path
    rows = [
        ("Airflow UI / REST API v2", stack.url("api"), f"user {user}, password in {secret('admin_password')}"),
        ("Flower", stack.url("flower"), f"user {user}, password in {secret('flower_password')}"),
        ("Scheduler health", f"{stack.url('scheduler_health')}/health", ""),
        ("Inference service", f"{stack.url('inference')}/health",
         f"recommendations: /api/v1/recommend; deploy and warm-up: bearer token in {secret('inference_token')}"),
        ("Prometheus", stack.url("prometheus"), f"user {user}, password in {secret('prometheus_password')}"),
        ("Alertmanager", stack.url("alertmanager"), f"user {user}, password in {secret('alertmanager_password')}"),
        ("On-call inbox", f"{stack.url('oncall_inbox')}/notifications",
         f"every notification Alertmanager sent; bearer token in {secret('oncall_inbox_token')}"),
        ("Pushgateway", stack.url("pushgateway"), f"user {user}, password in {secret('pushgateway_password')}"),
        ("FreshPoC query API", f"{stack.url('freshpoc_query')}/api/v1/projects/jaffle_shop/nodes",
         "lineage stored by FreshPoC_E2E; the other FreshPoC services on freshpoc_* ports"),
        ("StatsD bridge metrics", f"{stack.url('statsd_metrics')}/metrics",
         f"Airflow StatsD in on udp {stack.ports['statsd']}"),
        ("Exporters", ", ".join(f"{stack.ports[name]}" for name in ("node_exporter", "redis_exporter",
                                                                    "postgres_exporter", "blackbox_exporter")),
         "node, Redis (queue lengths), PostgreSQL, the api-server's health probe; all scraped by Prometheus"),
        ("PostgreSQL", f"{stack.bind_host}:{stack.ports['postgres']}",
         f"superuser postgres, password in {secret('postgres_superuser_password')}"),
        ("Redis (Celery broker)", f"{stack.bind_host}:{stack.ports['redis']}",
         f"a user per role (users: {secret(USERS_FILE)})"),
        ("Logs", f"{stack.logs_dir}/<component>.log", f"task logs in {stack.logs_dir}/airflow/"),
        ("Status / stop", "make status / make down", ""),
    ]
    print(f"\nControl plane is up ({stack.home})")
    for name, where, note in rows:
        print(f"  {name:<26} {where:<32} {note}")
    print()


def add_certs_commands(commands: argparse._SubParsersAction) -> None:
    certs_parser = commands.add_parser("certs", help="a CA and a certificate per host for TLS between hosts")
    actions = certs_parser.add_subparsers(dest="certs_command", required=True)
    issue = actions.add_parser("issue", help="issue what is missing, expiring, or names other addresses")
    rotate = actions.add_parser("rotate", help="re-issue every host's certificate in the folder")
    rotate.add_argument("--new-ca", action="store_true",
                        help="a new CA first; clients trust the old one too until it expires")
    expiry = actions.add_parser("expiry", help="each certificate's expiry, as Prometheus metrics")
    expiry.add_argument("--textfile-dir", type=Path, help="write them for node_exporter's textfile collector")
    for action in (issue, rotate, expiry):
        action.add_argument("folder", type=Path, help="the PKI folder (owner-only files)")
    issue.add_argument("--host", type=host_argument, action="append", required=True,
                       help="HOST=ADDRESS[,NAME...]: a host and every address and name clients reach it by")
    for action in (issue, rotate):
        action.add_argument("--ca-cert", type=Path, help="your own CA's certificate (PEM), with --ca-key")
        action.add_argument("--ca-key", type=Path, help="your own CA's key (PEM, unencrypted)")
        action.add_argument("--deployment", default="controlplane", help="names a generated CA")


def add_secrets_commands(commands: argparse._SubParsersAction) -> None:
    secrets_parser = commands.add_parser("secrets", help="the tasks' connections and variables in a secrets backend")
    publish = secrets_parser.add_subparsers(dest="secrets_command", required=True).add_parser(
        "publish", help='put {"connections": {...}, "variables": {...}} from stdin into Secrets Manager')
    publish.add_argument("--endpoint-url", help="a service with Secrets Manager's API (default: AWS's)")
    publish.add_argument("--region", default="us-east-1")
    publish.add_argument("--ca-bundle", help="the CA the endpoint's certificate chains to (default: public CAs)")
    publish.add_argument("--from-environment", action="store_true",
                         help="publish this process's AIRFLOW_CONN_* and AIRFLOW_VAR_* variables instead of stdin")


def host_argument(text: str) -> tuple[str, list[str]]:
    from stackctl.native import certificates

    try:
        return certificates.parse_host(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def certs(args: argparse.Namespace) -> int:
    """`stackctl certs ...`: print what it did; each metric line for `expiry`."""
    from stackctl.native import certificates

    if args.certs_command == "expiry":
        if args.textfile_dir:
            certificates.write_expiry_metrics(args.folder, args.textfile_dir)
        print(certificates.expiry_metrics(args.folder), end="")
        return 0
    if (args.ca_cert is None) != (args.ca_key is None):
        raise StackError("--ca-cert and --ca-key go together")
    own = (args.ca_cert, args.ca_key) if args.ca_cert else None
    rotating = args.certs_command == "rotate"
    hosts = certificates.hosts_in(args.folder) if rotating else dict(args.host)
    if rotating and not hosts:
        raise StackError(f"{args.folder}: no host certificates to rotate; issue them first")
    issued = certificates.ensure(args.folder, args.deployment, hosts, own_ca=own, rotate=rotating,
                                 new_ca=rotating and args.new_ca)
    print(f"issued: {', '.join(issued) or 'nothing (every certificate is current)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stackctl", description="Run the native control plane.")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="state folder (default: .run/)")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start every component and wait until all are healthy (progress on "
                                        "stderr: a line as each starts and as it is healthy; the URLs on stdout)")
    up.add_argument("--port", type=parse_port, action="append", default=[], help="NAME=N, e.g. api=18080")
    up.add_argument("--fault-injection", action="store_true",
                    help="turn on the FreshPoC services' fault-injection routes (tests); kept for later starts")
    up.add_argument("--tls", action="store_true",
                    help="TLS where a listener supports it, whatever config.yaml's tls says; kept for later starts")
    commands.add_parser("status", help="supervised processes and component health")
    commands.add_parser("down", help="stop every component")
    commands.add_parser("urls", help="print URLs and where the credentials are")
    airflow = commands.add_parser("airflow", help="run the airflow CLI against this stack")
    airflow.add_argument("args", nargs=argparse.REMAINDER)
    render = commands.add_parser("render", help="rewrite a committed rendering of config.yaml")
    render.add_argument("kind", choices=tuple(RENDERERS))
    tenant = commands.add_parser("tenant", help="onboard tenants into this stack's platform data")
    tenant_add = tenant.add_subparsers(dest="tenant_command", required=True).add_parser(
        "add", help="validate a CSV or Parquet file of interactions, then register the tenant and write its data")
    tenant_add.add_argument("slug", help=f"the tenant id: {SLUG_RULE}")
    tenant_add.add_argument("--interactions", type=Path, required=True, metavar="FILE",
                            help="user_id, item_id, weight (or rating), timestamp, optional type; see tenants.py")
    tenant_add.add_argument("--name", help="display name (default: the slug, capitalised)")
    tenant_add.add_argument("--replace", action="store_true", help="replace an existing tenant's data")
    tenant_add.add_argument("--types", type=lambda text: tuple(t.strip() for t in text.split(",") if t.strip()),
                            metavar="T1,T2", help="the tenant's interaction types, which data quality accepts"
                                                  " (default: view,click,purchase)")
    backup = commands.add_parser("backup", help="write a consistent, restorable backup of this running stack")
    backup.add_argument("destination", help="a folder that does not exist yet, or s3://bucket/prefix")
    restore = commands.add_parser("restore", help="replace this running stack's databases and models with a backup")
    restore.add_argument("source", help="a backup folder or s3:// prefix")
    restore.add_argument("--force", action="store_true", help="replace a stack that already has DAG runs or tenants")
    add_certs_commands(commands)
    add_secrets_commands(commands)
    args = parser.parse_args(argv)

    if args.command == "render":
        for path, text in RENDERERS[args.kind](settings.load_source()).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
            print(f"rendered {path}")
        return 0

    try:
        if args.command == "certs":
            return certs(args)
        if args.command == "secrets":
            from stackctl.ops import secrets_manager  # boto3: only for this command

            payload = (secrets_manager.payload_from_environment(dict(os.environ)) if args.from_environment
                       else secrets_manager.payload_from_stdin(sys.stdin.read()))
            published = secrets_manager.publish_from(payload, args.endpoint_url, args.region, args.ca_bundle)
            print(published.summary())
            return 0
        if args.command == "up":
            overrides = dict(args.port)
            unknown = set(overrides) - set(settings.load_source()["ports"])
            if unknown:
                raise StackError(f"unknown component in --port: {', '.join(sorted(unknown))}")
            stack = NativeStack.load(args.home, overrides, fault_injection=args.fault_injection, tls=args.tls)
            lifecycle.up(stack)
            print_urls(stack)
            return 0
        stack = NativeStack.load(args.home)
        if args.command == "down":
            print("stopped" if lifecycle.down(stack) else f"not running ({stack.home})")
            return 0
        if args.command == "urls":
            print_urls(stack)
            return 0
        if args.command == "tenant":
            from stackctl.ops import tenants  # pyarrow and pandas: only for this command

            written = tenants.add(stack, args.slug, args.interactions, name=args.name, replace=args.replace,
                                  types=args.types)
            print(f"tenant {written['tenant']}: {written['interactions']} interactions, {written['users']} users,"
                  f" {written['items']} items; training files: {', '.join(written['files'])}")
            for warning in written["warnings"]:
                print(f"warning: {warning}", file=sys.stderr)
            return 0
        if args.command in ("backup", "restore"):
            from stackctl.ops import backup as backups  # Airflow's object storage: only for these commands

            if args.command == "backup":
                done = backups.backup(stack, args.destination)
                print(f"backup written to {done['where']} in {done['seconds']} s; served versions: {done['tenants']}")
            else:
                done = backups.restore(stack, args.source, force=args.force)
                print(f"restored the backup of {done['created_at']} in {done['seconds']} s; "
                      f"served versions: {done['tenants']}")
            return 0
        if args.command == "airflow":
            os.execvpe("airflow", ["airflow", *args.args], lifecycle.operator_env(stack))
        processes, problems = lifecycle.status(stack)
        for p in processes:
            print(f"{p['name']:<18} {p['statename']:<9} {p['description']}")
        # Worker pools: desired processes (queued + running tasks) against what the workers run.
        print("\n" + capacity.table(capacity.pools(stack, broker.url(stack, lifecycle.read_secrets(stack)))))
        print("healthy" if not problems else "PROBLEMS: " + "; ".join(problems))
        return 0 if not problems else 1
    except StackError as exc:
        print(f"stackctl: {exc}", file=sys.stderr)
        return 2
