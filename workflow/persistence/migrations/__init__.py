"""Alembic migrations of subreq's schema (run with ``subreq db upgrade``)."""
