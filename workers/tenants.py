"""What a tenant id is: the one slug rule that the DAGs' params, the inference API, `stackctl tenant
add` and the tenants table's CHECK (migration V001, which a unit test ties to TENANT_SLUG) all apply.

No third-party import: DAG files import this at parse time.

The rule is one pattern, but regex engines disagree on `$`, so each consumer gets the spelling that
means "the whole value" to its engine:
    TENANT_SLUG       pydantic and FastAPI (Rust's regex), PostgreSQL's `~`, ECMA-262: `$` is the end
    PARAM_PATTERN     Airflow Params: jsonschema runs `pattern` with Python's re.search, where `$`
                      also matches before a final newline, so "acme\\n" would pass TENANT_SLUG
    is_tenant_slug    Python code: a full match, never re.match with `$`
"""

from __future__ import annotations

import re

# A lower-case letter, then 1-62 of a-z, 0-9 and '-': at most 63 characters, a DNS label's size.
TENANT_SLUG = r"^[a-z][a-z0-9-]{1,62}$"
SLUG_RULE = "a lower-case letter, then 1-62 of a-z, 0-9 and '-'"
# The lookahead refuses the newline Python's `$` lets through; in ECMA-262, the JSON-schema dialect
# a browser would validate with, `$` is already the end and the lookahead always holds.
PARAM_PATTERN = TENANT_SLUG + r"(?!\n)"

_SLUG = re.compile(TENANT_SLUG)


def is_tenant_slug(value: str) -> bool:
    return _SLUG.fullmatch(value) is not None
