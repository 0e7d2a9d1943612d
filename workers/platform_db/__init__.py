"""The platform database (tenants, users, items, interactions, training runs), apart from Airflow's."""
