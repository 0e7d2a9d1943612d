"""V007 on an outbox written before it: each alert once per run and state, keeping what was delivered."""

import json

import psycopg2
import pytest

from workers.platform_db import migrate
from workers.platform_db.db import transaction

V007 = 7
FIRING = {"labels": {"check": "duplicates"}, "startsAt": "2026-11-24T06:00:00+00:00",
          "endsAt": "2026-11-24T19:00:00+00:00"}
LATER = {**FIRING, "startsAt": "2026-11-24T12:00:00+00:00", "endsAt": "2026-11-25T01:00:00+00:00"}
RESOLVED = {"labels": {"check": "duplicates"}, "endsAt": "2026-11-24T12:00:00+00:00"}
KEY = "DataQualityCheckFailed/acme/user_interactions/duplicates"


@pytest.fixture
def outbox_before_v007(empty_db, tmp_path):
    """empty_db migrated up to V007, with the copies that retried enqueues of three runs left."""
    for version, path in migrate.migration_files():
        if version < V007:
            (tmp_path / path.name).write_bytes(path.read_bytes())
    migrate.apply(empty_db, tmp_path)
    with transaction(empty_db) as cur:
        for payload, delivered in [(FIRING, False), (FIRING, True), (FIRING, False),  # a retry delivered it
                                   (LATER, False), (LATER, False), (RESOLVED, False)]:
            cur.execute("INSERT INTO alert_outbox (alert_key, payload, delivered_at)"
                        " VALUES (%s, %s, CASE WHEN %s THEN now() END)", (KEY, json.dumps(payload), delivered))
    return empty_db


def test_v007_keeps_one_copy_of_each_alert_and_state_preferring_the_delivered_one(outbox_before_v007):
    migrate.apply(outbox_before_v007)

    with outbox_before_v007.cursor() as cur:
        cur.execute("SELECT id, dag_run_id, status, delivered_at IS NOT NULL FROM alert_outbox ORDER BY id")
        assert cur.fetchall() == [
            (2, "checked at 2026-11-24T06:00:00+00:00", "firing", True),
            (4, "checked at 2026-11-24T12:00:00+00:00", "firing", False),
            (6, "checked at 2026-11-24T12:00:00+00:00", "resolved", False),
        ]
    with pytest.raises(psycopg2.errors.UniqueViolation), transaction(outbox_before_v007) as cur:
        cur.execute("INSERT INTO alert_outbox (dag_run_id, alert_key, status, payload)"
                    " SELECT dag_run_id, alert_key, status, payload FROM alert_outbox WHERE id = 4")
