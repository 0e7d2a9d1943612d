"""The tenant-slug rule has one owner (workers/tenants.py): its Python check, its JSON-schema spelling and
the tenants table's CHECK accept and refuse the same ids ("acme\\n" among the refused), and no other file
spells the rule. The DAGs' params (tests/unit/dags/test_dagbag.py), the inference API
(tests/unit/services/test_inference_recommend.py) and `stackctl tenant add` (tests/unit/stackctl/ops/
test_tenants.py) are checked against the same ids where they are tested.
"""

import re

import jsonschema
import psycopg2
import pytest

from stackctl.model import settings
from tests.secret_scan import tracked_files
from workers import tenants
from workers.platform_db.migrate import MIGRATIONS

# Ids and whether the rule takes them. A trailing newline is what Python's `$` lets through.
IDS = {
    "acme": True, "ab": True, "a-1": True, "acme-": True, "a" + "b" * 62: True,
    "a": False, "a" + "b" * 63: False, "": False, "Acme": False, "1acme": False, "-acme": False,
    "ac_me": False, "acme ": False, "acme\n": False, "\nacme": False, "ac\nme": False,
}
# The only files that spell the rule: its owner, and the migration that a committed CHECK must keep.
SPELLED_IN = {"workers/tenants.py", "workers/platform_db/migrations/V001__platform_tables.sql"}


@pytest.mark.parametrize(("tenant_id", "valid"), IDS.items())
def test_the_python_check_takes_exactly_the_slugs(tenant_id, valid):
    assert tenants.is_tenant_slug(tenant_id) is valid


@pytest.mark.parametrize(("tenant_id", "valid"), IDS.items())
def test_the_param_pattern_under_jsonschema_takes_exactly_the_slugs(tenant_id, valid):
    schema = {"type": "string", "pattern": tenants.PARAM_PATTERN}
    assert jsonschema.Draft7Validator(schema).is_valid(tenant_id) is valid


def test_the_plain_pattern_would_let_a_trailing_newline_through_jsonschema():
    """Why the params need their own spelling: jsonschema matches with re.search."""
    assert jsonschema.Draft7Validator({"type": "string", "pattern": tenants.TENANT_SLUG}).is_valid("acme\n")


def test_the_tenants_table_checks_the_same_rule(platform_db):
    """V001 is applied and must not change, so its CHECK is tied to the owner here: the same text, and the
    same ids taken. PostgreSQL's `$` (without the n flag) is the end of the string, so it refuses "acme\\n"."""
    check = re.search(r"tenant_id ~ '([^']+)'", (MIGRATIONS / "V001__platform_tables.sql").read_text()).group(1)
    assert check == tenants.TENANT_SLUG
    taken = {}
    with platform_db.cursor() as cur:
        for tenant_id in IDS:
            cur.execute("SAVEPOINT candidate")
            try:
                cur.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, 'x')", (tenant_id,))
                taken[tenant_id] = True
            except psycopg2.errors.CheckViolation:
                taken[tenant_id] = False
            cur.execute("ROLLBACK TO SAVEPOINT candidate")
    assert taken == IDS


def test_no_other_file_spells_the_rule():
    body = tenants.TENANT_SLUG.strip("^$")
    spelled = {str(path.relative_to(settings.REPO)) for path in tracked_files(settings.REPO)
               if body in path.read_text(errors="replace")}
    assert spelled == SPELLED_IN, "import the rule from workers/tenants.py"
