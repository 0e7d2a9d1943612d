"""Per-tenant DQ configuration in dq_tenant_config, on a real PostgreSQL: it changes thresholds, severities
and valid types without code, and a bad value is refused with a message that names it."""

import psycopg2
import pytest

from tests.unit.workers.dq.test_checks_sql import AS_OF, execute, seed
from workers.dq import checks, config, summaries


def anomalies(conn, tenants: list[str], overrides=None) -> dict:
    summaries.refresh(conn, tenants)
    found = checks.anomalies(conn, tenants, AS_OF, config.load(conn, tenants, overrides))
    return {(r.tenant_id, r.check): r for r in found}


def test_a_tenant_without_a_row_gets_the_defaults_and_a_row_overrides_them(platform_db):
    seed(platform_db, "acme")
    seed(platform_db, "globex")
    execute(platform_db, "INSERT INTO dq_tenant_config (tenant_id, interactions_max_age_h, completeness, severities)"
                         " VALUES ('globex', 48, '{\"items.title\": 80}', '{\"duplicates\": \"critical\","
                         " \"items.freshness\": \"info\"}')")
    configs = config.load(platform_db, ["acme", "globex"], {"training_max_age_h": 6, "items_max_age_h": None})
    assert configs["acme"] == checks.DqConfig(training_max_age_h=6)
    globex = configs["globex"]
    assert (globex.interactions_max_age_h, globex.training_max_age_h, globex.items_max_age_h) == (48, 6, 168)
    assert globex.completeness[("items", "title")] == (80.0, "warning")
    assert globex.severity("user_interactions", "duplicates", "warning") == "critical"
    assert globex.severity("items", "freshness", "warning") == "info"
    assert globex.severity("user_interactions", "freshness", "critical") == "critical"


def test_a_tenant_with_its_own_types_does_not_page_on_them(platform_db):
    """The issue's case: a tenant whose events are likes and ratings."""
    for tenant in ("acme", "likes"):
        seed(platform_db, tenant)
        execute(platform_db, "UPDATE user_interactions SET interaction_type = 'like' WHERE tenant_id = %s"
                             " AND interaction_type = 'click'", tenant)
    execute(platform_db, "INSERT INTO dq_tenant_config (tenant_id, valid_types, severities)"
                         " VALUES ('likes', '{view,like,rating,purchase}',"
                         " '{\"invalid_interaction_types\": \"warning\"}')")
    found = anomalies(platform_db, ["acme", "likes"])
    acme, likes = found[("acme", "invalid_interaction_types")], found[("likes", "invalid_interaction_types")]
    assert (acme.status, acme.severity, acme.observed) == ("fail", "critical", 72.0)
    assert (likes.status, likes.severity, likes.observed) == ("pass", "warning", 0.0)
    assert likes.details["valid_types"] == ["view", "like", "rating", "purchase"]


def test_thresholds_come_from_the_tenant_row(platform_db):
    seed(platform_db, "acme")
    execute(platform_db, "INSERT INTO user_interactions (tenant_id, user_id, item_id, interaction_type, occurred_at)"
                         " SELECT tenant_id, user_id, item_id, interaction_type, occurred_at FROM user_interactions"
                         " WHERE tenant_id = 'acme' LIMIT 3")
    assert anomalies(platform_db, ["acme"])[("acme", "duplicates")].status == "fail"
    execute(platform_db, "INSERT INTO dq_tenant_config (tenant_id, duplicates_max) VALUES ('acme', 5)")
    duplicates = anomalies(platform_db, ["acme"])[("acme", "duplicates")]
    assert (duplicates.status, duplicates.observed, duplicates.threshold) == ("pass", 3.0, 5)


@pytest.mark.parametrize(("column", "value", "constraint"), [
    ("valid_types", "{}", "dq_config_valid_types_are_lowercase_words"),
    ("valid_types", "{view,Like}", "dq_config_valid_types_are_lowercase_words"),
    ("valid_types", "{view,NULL}", "dq_config_valid_types_are_lowercase_words"),
    ("valid_types", "{\"view,click\"}", "dq_config_valid_types_are_lowercase_words"),
    ("interactions_max_age_h", "0", "dq_config_max_ages_are_positive"),
    ("orphans_max", "-1", "dq_config_allowed_counts_are_not_negative"),
    ("bot_max_per_hour", "0", "dq_config_bot_max_per_hour_is_positive"),
    ("volume_z", "-3", "dq_config_volume_z_is_positive"),
    ("completeness", '{"items.title": 101}', "dq_config_completeness_is_percent_per_table_field"),
    ("completeness", '{"items.title": "high"}', "dq_config_completeness_is_percent_per_table_field"),
    ("completeness", '{"title": 90}', "dq_config_completeness_is_percent_per_table_field"),
    ("completeness", '[90]', "dq_config_completeness_is_percent_per_table_field"),
    ("severities", '{"duplicates": "page"}', "dq_config_severities_are_info_warning_or_critical"),
    ("severities", '{"duplicates": 3}', "dq_config_severities_are_info_warning_or_critical"),
])
def test_the_table_refuses_a_bad_value_naming_the_rule(platform_db, column, value, constraint):
    execute(platform_db, "INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme')")
    with pytest.raises(psycopg2.errors.CheckViolation, match=constraint):
        execute(platform_db, f"INSERT INTO dq_tenant_config (tenant_id, {column}) VALUES ('acme', %s)", value)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"interactions_max_age_h": 0}, "interactions_max_age_h = 0 is refused; it must be a number above 0"),
    ({"valid_types": ["view", "Like"]}, "valid_types = ['view', 'Like'] is refused"),
    ({"severities": {"duplicates": "page"}}, "each one of info, warning, critical"),
    ({"bot_max_per_hour": 2.5}, "bot_max_per_hour = 2.5 is refused; it must be a whole number above 0"),
    ({"volume": 3}, "volume = 3 is refused; it must be one of the settings"),
])
def test_a_bad_value_from_a_run_is_refused_before_any_check(platform_db, overrides, message):
    seed(platform_db, "acme")
    with pytest.raises(config.ConfigError, match=f"DQ configuration of tenant acme: .*{message.replace('[', '.')}"):
        config.load(platform_db, ["acme"], overrides)


def test_a_completeness_setting_for_a_field_no_check_measures_is_refused(platform_db):
    seed(platform_db, "acme")
    execute(platform_db, "INSERT INTO dq_tenant_config (tenant_id, completeness)"
                         " VALUES ('acme', '{\"items.colour\": 90}')")
    with pytest.raises(config.ConfigError, match="completeness names 'items.colour', which no check measures"):
        config.load(platform_db, ["acme"])
