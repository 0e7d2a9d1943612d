#!/usr/bin/env bash
# Install everything the native stack needs, on a fresh Debian 12 machine: system packages
# with apt, then the Python environment from a committed lock only.
#   airflow/setup.sh         .venv = requirements.lock (runtime: what the image and hosts run)
#   airflow/setup.sh --dev   .venv = requirements-dev.lock (runtime + tests, lint, ansible,
#                            bench and dashboard tools); SETUP_DEV=1 does the same
set -euo pipefail
cd "$(dirname "$0")/.."

LOCK=requirements.lock
[[ ${SETUP_DEV:-0} == 1 ]] && LOCK=requirements-dev.lock
for arg in "$@"; do
    case $arg in
        --dev) LOCK=requirements-dev.lock ;;
        *) echo "usage: $0 [--dev]" >&2; exit 2 ;;
    esac
done

UV_VERSION=0.13.8
SYSTEM_PACKAGES=(
    postgresql-15 redis-server util-linux iproute2 procps
    prometheus prometheus-alertmanager prometheus-pushgateway
    prometheus-redis-exporter prometheus-postgres-exporter prometheus-node-exporter
    prometheus-blackbox-exporter
    docker-compose  # only `docker-compose config`, which validates compose/ offline
    git             # the FreshPoC ingestion service clones dbt repositories
    openssh-server  # the multi-host test cluster: an sshd per network-namespace host (tests/cluster)
    nftables        # the test cluster's per-host firewall, from docs/security.md's table (tests/cluster)
)
# Debian starts these as services on install; the stack runs its own instances instead.
DEBIAN_SERVICES=(ssh redis-server postgresql prometheus prometheus-alertmanager prometheus-pushgateway
    prometheus-redis-exporter prometheus-postgres-exporter prometheus-node-exporter
    prometheus-blackbox-exporter)
PG_SYSTEM_USER=cpstack   # runs PostgreSQL when the stack is started by root; see stackctl/layout.py

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $EUID -ne 0 ]]; then
        echo "setup: missing system packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    for svc in "${DEBIAN_SERVICES[@]}"; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
            systemctl stop "$svc" && systemctl disable "$svc" >/dev/null 2>&1 || true
        fi
    done
    for svc in "${DEBIAN_SERVICES[@]}"; do
        [[ $svc == postgresql ]] && continue
        service "$svc" stop >/dev/null 2>&1 || true
    done
fi

if [[ $EUID -eq 0 ]] && ! id -u "$PG_SYSTEM_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_SYSTEM_USER"
fi

if ! command -v uv >/dev/null || [[ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]]; then
    python3 -m pip install --quiet "uv==$UV_VERSION"
fi
[[ -x .venv/bin/python ]] || uv venv --quiet --python 3.11 .venv
# Exactly the lock: packages not in it are removed, nothing is resolved at install time.
uv pip sync --quiet --require-hashes --python .venv/bin/python "$LOCK"
echo "setup: ok (.venv from $LOCK)"
