"""The native stack's runtime: its state folder, supervisord, start-up in phases, health, and clients
of its PostgreSQL, Redis and REST API.
"""
