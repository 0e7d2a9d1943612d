"""Basic auth and HTTPS of Prometheus, Alertmanager and the Pushgateway: their --web.config.file.

The three read the Prometheus exporter-toolkit's web configuration, which holds a bcrypt hash
of each user's password. Each listener has one user, config.yaml's admin_user, with a password
of its own (model/listeners.py: scheme WEB_CONFIG), generated like every secret. The native stack writes the files
at each start, compose's `web-config` one-shot service into a volume the three mount, and
ansible as secret files of their processes (the `web_password_hash` filter of ansible/).

`python -m stackctl.render.web_auth OUT_DIR USER` is compose's one-shot: it reads each password from its
environment variable (model/secrets.py env_name) and writes OUT_DIR/<listener>.yml.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from pathlib import Path

import bcrypt
import yaml

from stackctl.model.listeners import WEB_CONFIG_SECRETS
from stackctl.model.secrets import env_name
from stackctl.model.target import TLS_CERT, TLS_KEY, Target

# bcrypt's cost: about 50 ms per hash here. The listeners cache a verified password
# (exporter-toolkit), so a scrape or query pays it once, not per request.
COST = 10
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_STANDARD_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def password_hash(password: str) -> str:
    """bcrypt of the password, with a salt derived from it.

    The same password always renders the same file, so a deploy that changes nothing writes
    nothing (ansible's second run reports changed=0) and restarts nothing. The salt's job, telling
    equal passwords apart across users, does not arise: each password is random and guards one user.
    """
    digest = hashlib.sha256(b"stackctl web_auth salt\0" + password.encode()).digest()[:16]
    salt = base64.b64encode(digest).decode()[:22].translate(str.maketrans(_STANDARD_ALPHABET, _BCRYPT_ALPHABET))
    return bcrypt.hashpw(password.encode(), f"$2b${COST:02d}${salt}".encode()).decode()


def render(user: str, hashed: str, target: Target | None = None) -> dict:
    """The web config of one listener: its user's bcrypt hash and, where the target has tls, the host's
    certificate and key, which the listener serves HTTPS with (the toolkit reads the file per connection,
    so a rotated certificate needs no restart)."""
    config: dict = {"basic_auth_users": {user: hashed}}
    if target is not None and target.tls:
        config["tls_server_config"] = {"cert_file": target.tls_file(TLS_CERT), "key_file": target.tls_file(TLS_KEY)}
    return config


def to_yaml(config: dict) -> str:
    return "# Rendered by stackctl (airflow/stackctl/render/web_auth.py). Do not edit.\n" + yaml.safe_dump(config)


def main(argv: list[str]) -> int:
    out, user = Path(argv[0]), argv[1]
    for listener, secret in WEB_CONFIG_SECRETS.items():
        password = os.environ.get(env_name(secret), "")
        if not password:
            print(f"web_auth: {env_name(secret)} is not set", file=sys.stderr)
            return 2
        target = out / f"{listener}.yml"
        target.with_suffix(".tmp").write_text(to_yaml(render(user, password_hash(password))))
        target.with_suffix(".tmp").replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
