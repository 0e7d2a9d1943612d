import pytest

from workers.exceptions import DataError
from workers.freshpoc import dbt_project, fetch
from workers.freshpoc.stage import SAMPLE_PROJECT

PROJECT = "name: shop\nmodel-paths: [models]\nseed-paths: [seeds]\n"


@pytest.fixture(scope="module")
def sample():
    return dbt_project.parse_project(fetch.read_files(SAMPLE_PROJECT))


def test_the_sample_project_has_its_models_seed_and_sources(sample):
    kinds = {(node["type"], node["name"]) for node in sample["nodes"]}
    assert kinds == {
        ("model", "customers"), ("model", "orders"), ("model", "stg_customers"), ("model", "stg_orders"),
        ("model", "stg_payments"), ("seed", "raw_payments"), ("source", "jaffle_shop.customers"),
        ("source", "jaffle_shop.orders"), ("source", "jaffle_shop.legacy_invoices"),
    }
    assert sample["project"] == "jaffle_shop" and sample["warnings"] == []


def test_the_sample_edges_follow_ref_and_source_calls(sample):
    edges = {(e["from"].split(".")[-1], e["to"].split(".")[-1]) for e in sample["edges"]}
    assert edges == {
        ("customers", "stg_customers"), ("orders", "stg_orders"), ("raw_payments", "stg_payments"),
        ("stg_customers", "customers"), ("stg_orders", "customers"), ("stg_payments", "customers"),
        ("stg_orders", "orders"), ("stg_payments", "orders"),
    }


def test_schema_files_describe_models(sample):
    customers = next(node for node in sample["nodes"] if node["id"] == "model.jaffle_shop.customers")
    assert customers["description"].startswith("One row per customer")
    assert customers["columns"] == ["customer_id", "customer_lifetime_value"]
    assert customers["path"] == "models/customers.sql"


def test_references_read_jinja_blocks_only_and_skip_jinja_comments():
    sql = """{# {{ ref('commented_out') }} #}
    -- a SQL comment is still rendered by Jinja: {{ ref("in_sql_comment") }}
    select * from {{ ref('pkg', 'other') }} join {{ source('app', 'users') }}
    {% set rows = ref('in_statement') %} where ref('not_jinja')"""
    refs, sources = dbt_project.references(sql)
    assert refs == ["in_sql_comment", "other", "in_statement"]
    assert sources == [("app", "users")]


def test_an_unknown_ref_is_a_data_error_naming_the_file():
    files = {"dbt_project.yml": PROJECT, "models/a.sql": "select * from {{ ref('missing') }}"}
    with pytest.raises(DataError, match=r"models/a.sql refers to 'missing'"):
        dbt_project.parse_project(files)


def test_an_undeclared_source_is_a_data_error():
    files = {"dbt_project.yml": PROJECT, "models/a.sql": "select * from {{ source('app', 'users') }}"}
    with pytest.raises(DataError, match=r"source\('app', 'users'\), which no sources file declares"):
        dbt_project.parse_project(files)


@pytest.mark.parametrize(("files", "message"), [
    ({"models/a.sql": "select 1"}, "dbt_project.yml is missing"),
    ({"dbt_project.yml": "name: [unclosed"}, "not valid YAML"),
    ({"dbt_project.yml": "version: 2"}, "no project name"),
    ({"dbt_project.yml": PROJECT, "models/a.sql": "select 1", "models/sub/a.sql": "select 2"}, "two nodes"),
])
def test_a_broken_project_is_refused_with_the_reason(files, message):
    with pytest.raises(DataError, match=message):
        dbt_project.parse_project(files)


def test_a_schema_entry_for_a_missing_model_is_a_warning():
    files = {"dbt_project.yml": PROJECT, "models/a.sql": "select 1",
             "models/schema.yml": "models:\n  - name: gone\n"}
    assert dbt_project.parse_project(files)["warnings"] == ["models/schema.yml describes 'gone', which is not in "
                                                            "the project"]
