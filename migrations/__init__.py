"""Alembic environment and versions for the catalog schema. Every schema change is a new version here."""
