"""The catalog database: SQLAlchemy models, Alembic-managed schema, queries over models, snapshots and provenance."""
