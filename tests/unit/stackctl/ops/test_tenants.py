"""`stackctl tenant add`: a file of interactions onboards exactly as training reads a tenant, and a bad
file or tenant is refused with every problem named and nothing written.

Real PostgreSQL (the migrated platform schema), real files in tmp_path, a real file:// storage root.
"""

import json

import numpy as np
import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from stackctl import cli
from stackctl.demo.data import TenantSpec, generate
from stackctl.native import postgres
from stackctl.ops import tenants
from workers import storage
from workers.schema import TRAINING_SCHEMA
from workers.tenants import SLUG_RULE
from workers.training.data import load_interactions

END_US = 1_795_500_000_000_000  # the generated data ends here (2026-11-24)
NOW_US = END_US + 3_600_000_000  # "now" for the checks: an hour later
HEADER = "user_id,item_id,weight,timestamp,type\n"
GOOD_ROW = "1,2,1.0,2026-11-01T10:00:00Z,view\n"


@pytest.fixture(scope="module")
def data():
    return generate(TenantSpec("acme", n_users=120, n_items=60, n_interactions=3000, seed=7), END_US)


@pytest.fixture
def objects(tmp_path):
    return tmp_path / "objects"


@pytest.fixture
def base(objects):
    return storage.root(f"file://{objects}")


def iso(us: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(us.astype("datetime64[us]"), unit="us", timezone="UTC")


def write_csv(path, data, weight="rating", with_type=True):
    columns = {"user_id": data.user_id, "item_id": data.item_id, weight: data.weight,
               "timestamp": iso(data.occurred_at_us)}
    if with_type:
        columns["type"] = data.interaction_type
    pacsv.write_csv(pa.table(columns), path)
    return path


def rows(conn, sql: str, *params):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def files_under(objects) -> list[str]:
    return sorted(str(p.relative_to(objects)) for p in objects.rglob("*") if p.is_file()) if objects.exists() else []


def assert_nothing_written(conn, objects):
    for table in ("tenants", "users", "items", "user_interactions"):
        assert rows(conn, f"SELECT count(*) FROM {table}") == [(0,)], table  # noqa: S608
    assert files_under(objects) == []


def onboard(conn, base, path, tenant="acme", **kwargs):
    return tenants.onboard(conn, base, tenant, path, now_us=NOW_US, **kwargs)


# --- valid files ---------------------------------------------------------------------------------

def test_a_csv_onboards_as_training_reads_a_tenant(platform_db, base, objects, tmp_path, data):
    written = onboard(platform_db, base, write_csv(tmp_path / "acme.csv", data))

    arrays, summary = load_interactions(base, "acme")  # what tenant_model_training's validate task runs
    assert summary["interactions"] == 3000 and written["interactions"] == 3000
    assert np.array_equal(arrays["user_id"], data.user_id) and np.array_equal(arrays["item_id"], data.item_id)
    assert np.array_equal(arrays["weight"], data.weight)
    assert np.array_equal(arrays["occurred_at_us"], data.occurred_at_us)
    assert files_under(objects) == ["tenants/acme/training/interactions/part-00000.parquet"]
    assert pq.read_schema(objects / "tenants/acme/training/interactions/part-00000.parquet") == TRAINING_SCHEMA

    assert rows(platform_db, "SELECT tenant_id, name, active FROM tenants") == [("acme", "Acme", True)]
    db = rows(platform_db, "SELECT user_id, item_id, interaction_type, weight,"
                           " (extract(epoch FROM occurred_at) * 1e6)::bigint FROM user_interactions"
                           " WHERE tenant_id = 'acme' ORDER BY interaction_id")
    assert db == list(zip(data.user_id.tolist(), data.item_id.tolist(), data.interaction_type.tolist(),
                          data.weight.tolist(), data.occurred_at_us.tolist(), strict=True))
    # Every user and item of the interactions is in the catalogue (no orphans for data_quality_check).
    assert rows(platform_db, "SELECT count(*) FROM user_interactions i LEFT JOIN users u USING (tenant_id, user_id)"
                             " LEFT JOIN items it USING (tenant_id, item_id)"
                             " WHERE u.user_id IS NULL OR it.item_id IS NULL") == [(0,)]
    assert rows(platform_db, "SELECT count(*) FROM users") == [(written["users"],)] == [(summary["users"],)]
    first, last = rows(platform_db, "SELECT created_at, updated_at FROM items WHERE item_id = %s",
                       int(data.item_id[0]))[0]
    assert first.timestamp() * 1e6 == data.occurred_at_us[0] and last >= first


def test_a_parquet_file_with_epoch_ms_and_no_type_column(platform_db, base, tmp_path, data):
    path = tmp_path / "acme.parquet"
    pq.write_table(pa.table({"user_id": data.user_id, "item_id": data.item_id, "weight": data.weight,
                             "timestamp": data.occurred_at_us // 1000}), path)
    onboard(platform_db, base, path)

    arrays, _ = load_interactions(base, "acme")
    assert np.array_equal(arrays["occurred_at_us"], data.occurred_at_us // 1000 * 1000)
    assert rows(platform_db, "SELECT DISTINCT interaction_type FROM user_interactions") == [("view",)]


def test_timestamp_forms_and_header_aliases(tmp_path):
    path = tmp_path / "forms.csv"
    path.write_text(" User_ID ,item_id,rating,occurred_at,interaction_type\n"
                    "1,2,1,2026-11-01T10:00:00+02:00,click\n"
                    "1,3,0,2026-11-01 08:00:01,view\n"
                    "2,3,2.5,1793520002,purchase\n"
                    "2,4,3,1793520003500,view\n")
    table, problems = tenants.read_interactions(path, NOW_US)
    assert problems == []
    assert table["occurred_at"].cast(pa.int64()).to_pylist() == [
        1_793_520_000_000_000, 1_793_520_001_000_000, 1_793_520_002_000_000, 1_793_520_003_500_000]
    assert table["interaction_type"].to_pylist() == ["click", "view", "purchase", "view"]


def test_parquet_column_types_other_than_text(tmp_path):
    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"user_id": pa.array([" -5 ", "7"]), "item_id": pa.array([1.0, 2.0]), "weight": [1, 2],
                             "timestamp": pa.array([1_790_000_000_000, 1_790_000_001_000], pa.timestamp("ms")),
                             "type": pa.array(["view", "click"]).dictionary_encode()}), path)
    table, problems = tenants.read_interactions(path, NOW_US)
    assert problems == []
    assert table.to_pydict() | {"occurred_at": table["occurred_at"].cast(pa.int64()).to_pylist()} == {
        "user_id": [-5, 7], "item_id": [1, 2], "interaction_type": ["view", "click"], "weight": [1.0, 2.0],
        "occurred_at": [1_790_000_000_000_000, 1_790_000_001_000_000]}


# --- refusals: each names the problem, and nothing is written ------------------------------------

INVALID = {
    "unknown format": ("acme.txt", HEADER + GOOD_ROW, "unknown format; use .csv, .csv.gz, .parquet, .pq"),
    "empty file": ("acme.csv", "", "empty file"),
    "no rows": ("acme.csv", HEADER, "empty file (a header and no rows)"),
    "not csv": ("acme.csv", HEADER + "1,2\n", "not a readable csv file"),
    "not parquet": ("acme.parquet", "PAR0 not parquet", "not a readable parquet file"),
    "missing column": ("acme.csv", "user_id,weight,timestamp\n1,1,2026-11-01\n", "missing column item_id"),
    "two weights": ("acme.csv", "user_id,item_id,weight,rating,timestamp\n1,2,1,1,2026-11-01\n",
                    "columns weight and rating both given"),
    "null id": ("acme.csv", HEADER + GOOD_ROW + ",2,1.0,2026-11-01,view\n", "row 2: user_id is empty"),
    "non-integer id": ("acme.csv", HEADER + "1,sku-9,1.0,2026-11-01,view\n",
                       "row 1: item_id 'sku-9' is not an integer"),
    "non-numeric weight": ("acme.csv", HEADER + "1,2,lots,2026-11-01,view\n", "row 1: weight 'lots' is not a number"),
    "negative weight": ("acme.csv", HEADER + GOOD_ROW + "1,2,-0.5,2026-11-01,view\n",
                        "row 2: weight '-0.5' is negative"),
    "bad timestamp": ("acme.csv", HEADER + "1,2,1,abc,view\n",
                      "row 1: timestamp 'abc' is not ISO-8601 or epoch seconds or milliseconds"),
    "future timestamp": ("acme.csv", HEADER + "1,2,1,2027-01-01T00:00:00Z,view\n",
                         "row 1: timestamp '2027-01-01T00:00:00Z' is in the future"),
    "invalid type": ("acme.csv", HEADER + "1,2,1,2026-11-01,hack\n",
                     "row 1: type 'hack' is not one of view, click, purchase"),
    "empty type": ("acme.csv", HEADER + "1,2,1,2026-11-01,\n", "row 1: type is empty"),
}


@pytest.mark.parametrize("case", INVALID)
def test_a_bad_file_is_refused_with_its_problem(platform_db, base, objects, tmp_path, case):
    name, content, message = INVALID[case]
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(tenants.OnboardingError) as refused:
        onboard(platform_db, base, path)
    assert any(message in problem for problem in refused.value.problems), refused.value.problems
    assert_nothing_written(platform_db, objects)


def test_every_problem_is_reported_at_once(platform_db, base, objects, tmp_path):
    path = tmp_path / "acme.csv"
    path.write_text(HEADER + GOOD_ROW + ",x,-1,abc,hack\n" + "1,2,1,yesterday,view\n" * 7)
    with pytest.raises(tenants.OnboardingError) as refused:
        onboard(platform_db, base, path, tenant="Bad_Slug")
    assert refused.value.problems == [
        "tenant id 'Bad_Slug' is not a slug: a lower-case letter, then 1-62 of a-z, 0-9 and '-'",
        "row 2: user_id is empty",
        "row 2: item_id 'x' is not an integer",
        "row 2: type 'hack' is not one of view, click, purchase",
        "row 2: weight '-1' is negative",
        "row 2: timestamp 'abc' is not ISO-8601 or epoch seconds or milliseconds",
        *(f"row {r}: timestamp 'yesterday' is not ISO-8601 or epoch seconds or milliseconds" for r in range(3, 7)),
        "... and 3 more rows like that",
    ]
    assert str(refused.value).startswith("nothing written:\n  tenant id 'Bad_Slug'")
    assert_nothing_written(platform_db, objects)


# --- an existing tenant --------------------------------------------------------------------------

def test_an_existing_tenant_is_refused_and_kept(platform_db, base, objects, tmp_path, data):
    onboard(platform_db, base, write_csv(tmp_path / "acme.csv", data))
    before = (rows(platform_db, "SELECT count(*), sum(weight) FROM user_interactions"), files_under(objects),
              (objects / "tenants/acme/training/interactions/part-00000.parquet").read_bytes())
    other = tmp_path / "other.csv"
    other.write_text(HEADER + GOOD_ROW)
    with pytest.raises(tenants.OnboardingError, match="tenant acme already exists"):
        onboard(platform_db, base, other)
    assert (rows(platform_db, "SELECT count(*), sum(weight) FROM user_interactions"), files_under(objects),
            (objects / "tenants/acme/training/interactions/part-00000.parquet").read_bytes()) == before


def test_the_transaction_refuses_an_existing_tenant_too(platform_db, base, tmp_path, data):
    """Two adds at once both pass the check before writing: the insert of the tenant row decides."""
    onboard(platform_db, base, write_csv(tmp_path / "acme.csv", data))
    table, _ = tenants.read_interactions(tmp_path / "acme.csv", NOW_US)
    with pytest.raises(tenants.OnboardingError, match="tenant acme already exists"):
        tenants.write_rows(platform_db, "acme", "Acme", *tenants.catalogue(table), table.slice(0, 10), replace=False)
    assert rows(platform_db, "SELECT count(*) FROM user_interactions") == [(3000,)]


def test_training_files_without_a_tenant_row_count_as_a_tenant(platform_db, base, objects, tmp_path, data):
    storage.write_bytes(storage.training_dir(base, "acme") / "part-00000.parquet", b"left over")
    with pytest.raises(tenants.OnboardingError, match="tenant acme already exists"):
        onboard(platform_db, base, write_csv(tmp_path / "acme.csv", data))
    assert rows(platform_db, "SELECT count(*) FROM tenants") == [(0,)]


def test_replace_swaps_the_rows_and_the_files(platform_db, base, objects, tmp_path, data):
    onboard(platform_db, base, write_csv(tmp_path / "acme.csv", data))
    small = generate(TenantSpec("acme", n_users=60, n_items=30, n_interactions=1200, seed=8), END_US)
    onboard(platform_db, base, write_csv(tmp_path / "small.csv", small, weight="weight"), replace=True)

    _, summary = load_interactions(base, "acme")
    assert summary["interactions"] == 1200
    assert rows(platform_db, "SELECT count(*) FROM user_interactions") == [(1200,)]
    assert rows(platform_db, "SELECT count(*) FROM tenants WHERE active") == [(1,)]
    assert files_under(objects) == ["tenants/acme/training/interactions/part-00000.parquet"]


class CommitFails:
    """A connection whose commit of the tenant's rows fails (after `passing` commits: the existence check's),
    so after the files were swapped in."""

    def __init__(self, conn, passing: int = 0):
        self.conn, self.passing = conn, passing

    def cursor(self):
        return self.conn.cursor()

    def commit(self):
        self.passing -= 1
        if self.passing < 0:
            raise RuntimeError("the commit failed")
        self.conn.commit()

    def rollback(self):
        self.conn.rollback()


def test_a_failed_commit_puts_the_previous_files_back(platform_db, base, objects, tmp_path, data):
    onboard(platform_db, base, write_csv(tmp_path / "acme.csv", data))
    previous = (objects / "tenants/acme/training/interactions/part-00000.parquet").read_bytes()
    small = generate(TenantSpec("acme", n_users=60, n_items=30, n_interactions=1200, seed=8), END_US)
    with pytest.raises(RuntimeError, match="the commit failed"):
        onboard(CommitFails(platform_db), base, write_csv(tmp_path / "small.csv", small), replace=True)

    assert files_under(objects) == ["tenants/acme/training/interactions/part-00000.parquet"]
    assert (objects / "tenants/acme/training/interactions/part-00000.parquet").read_bytes() == previous
    assert rows(platform_db, "SELECT count(*) FROM user_interactions") == [(3000,)]


def test_a_failed_commit_of_a_new_tenant_leaves_no_files(platform_db, base, objects, tmp_path, data):
    with pytest.raises(RuntimeError, match="the commit failed"):
        onboard(CommitFails(platform_db, passing=1), base, write_csv(tmp_path / "acme.csv", data))
    assert_nothing_written(platform_db, objects)


def test_large_files_are_split_into_parts(platform_db, base, objects, tmp_path, data, monkeypatch):
    monkeypatch.setattr(tenants, "ROWS_PER_PART", 1000)
    onboard(platform_db, base, write_csv(tmp_path / "acme.csv", data))
    assert files_under(objects) == [f"tenants/acme/training/interactions/part-0000{n}.parquet" for n in range(3)]
    assert load_interactions(base, "acme")[1]["interactions"] == 3000


# --- the rules it shares, and the command ----------------------------------------------------------

@pytest.mark.parametrize("tenant", ["acme\n", "Acme", "a"])
def test_a_tenant_id_that_is_not_a_slug_is_refused(platform_db, base, objects, tmp_path, tenant):
    """The rule is workers/tenants.py's, with "acme\\n" refused (tests/unit/workers/test_tenants.py)."""
    path = tmp_path / "acme.csv"
    path.write_text(HEADER + GOOD_ROW)
    with pytest.raises(tenants.OnboardingError) as refused:
        onboard(platform_db, base, path, tenant=tenant)
    assert refused.value.problems == [f"tenant id {tenant!r} is not a slug: {SLUG_RULE}"]
    assert_nothing_written(platform_db, objects)


def test_the_command_onboards_into_the_stack_at_home(platform_db, objects, tmp_path, data, monkeypatch, capsys):
    home = tmp_path / "home"
    (home / "secrets").mkdir(parents=True)
    (home / "secrets" / "platform_db_password").write_text("s3cret\n")
    (home / "airflow").mkdir()
    (home / "airflow" / "variables.json").write_text(json.dumps({"platform_storage_uri": f"file://{objects}",
                                                                 "platform_storage_conn_id": ""}))
    connected = []
    monkeypatch.setattr(postgres, "connect", lambda stack, password, user, dbname: connected.append(
        (stack.home, password, user, dbname)) or psycopg2.connect(platform_db.dsn))  # the command closes it
    path = write_csv(tmp_path / "acme.csv", data)

    assert cli.main(["--home", str(home), "tenant", "add", "acme", "--interactions", str(path)]) == 0
    assert connected == [(home.resolve(), "s3cret", "platform", "platform")]
    assert capsys.readouterr().out.startswith("tenant acme: 3000 interactions")
    assert files_under(objects) == ["tenants/acme/training/interactions/part-00000.parquet"]
    assert rows(platform_db, "SELECT valid_types FROM dq_tenant_config") == [(["view", "click", "purchase"],)]

    path = write_csv(tmp_path / "globex.csv", data, with_type=False)
    assert cli.main(["--home", str(home), "tenant", "add", "globex", "--interactions", str(path),
                     "--types", "like, rating"]) == 0
    assert rows(platform_db, "SELECT valid_types FROM dq_tenant_config WHERE tenant_id = 'globex'") == [
        (["like", "rating"],)]
    assert rows(platform_db, "SELECT DISTINCT interaction_type FROM user_interactions WHERE tenant_id = 'globex'"
                ) == [("like",)]  # a file without a type column: the first type


def test_a_tenants_own_types_are_what_its_file_may_hold(platform_db, base, objects, tmp_path):
    path = tmp_path / "acme.csv"
    path.write_text(HEADER + "1,2,1.0,2026-11-01T10:00:00Z,like\n2,2,5,2026-11-01T10:00:01Z,rating\n")
    with pytest.raises(tenants.OnboardingError) as refused:
        onboard(platform_db, base, path)
    assert refused.value.problems == ["row 1: type 'like' is not one of view, click, purchase",
                                      "row 2: type 'rating' is not one of view, click, purchase"]

    onboard(platform_db, base, path, types=("like", "rating"))
    assert rows(platform_db, "SELECT valid_types FROM dq_tenant_config") == [(["like", "rating"],)]
    onboard(platform_db, base, path, types=("like", "rating", "share"), replace=True)
    assert rows(platform_db, "SELECT valid_types FROM dq_tenant_config") == [(["like", "rating", "share"],)]


@pytest.mark.parametrize(("types", "problem"), [
    ((), "--types is empty: give at least one interaction type"),
    (("view", "Like"), "interaction type 'Like' is not a lower-case letter then up to 31 of a-z, 0-9 and '_'"),
    (("view", "view"), "--types names a type twice"),
])
def test_bad_types_are_refused_and_nothing_written(platform_db, base, objects, tmp_path, types, problem):
    path = tmp_path / "acme.csv"
    path.write_text(HEADER + GOOD_ROW)
    with pytest.raises(tenants.OnboardingError) as refused:
        onboard(platform_db, base, path, types=types)
    assert refused.value.problems == [problem]
    assert_nothing_written(platform_db, objects)


def test_the_command_without_a_stack_says_so(tmp_path, capsys):
    path = tmp_path / "acme.csv"
    path.write_text(HEADER + GOOD_ROW)
    assert cli.main(["--home", str(tmp_path / "none"), "tenant", "add", "acme", "--interactions", str(path)]) == 2
    assert "no native stack in" in capsys.readouterr().err
