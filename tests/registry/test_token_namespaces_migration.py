"""Migration 0014 (token_namespaces), up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

from catalogkit import migrate, migrated
from sqlalchemy import inspect, text

from modelarc.registry.db import Catalog, current_revision, head_revision, make_engine


def _insert_token(conn, token_id: int, namespaces: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    conn.execute(
        text(
            "INSERT INTO api_tokens (id, name, token_hash, scope, created_at)"
            " VALUES (:id, :name, :hash, 'push', CURRENT_TIMESTAMP)"
        ),
        {"id": token_id, "name": f"t{token_id}", "hash": f"{token_id:064x}"},
    )
    for ns in namespaces:
        conn.execute(
            text("INSERT INTO token_namespaces (token_id, namespace) VALUES (:id, :ns)"),
            {"id": token_id, "ns": ns},
        )


def test_upgrade_keeps_old_tokens_archive_wide_and_downgrade_revokes_limited_ones(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        with migrated(engine, "0013") as conn:
            conn.execute(
                text(
                    "INSERT INTO api_tokens (id, name, token_hash, scope, created_at)"
                    " VALUES (1, 'old', :h, 'push', CURRENT_TIMESTAMP)"
                ),
                {"h": "1" * 64},
            )
        with migrated(engine, "0014") as conn:
            assert "token_namespaces" in inspect(conn).get_table_names()
            # the token made before 0014 has no namespaces: it reaches all of them, as it always did
            assert conn.execute(text("SELECT COUNT(*) FROM token_namespaces")).scalar() == 0
            _insert_token(conn, 2, ("acme", "beta"))
            _insert_token(conn, 3, ())
        with migrated(engine, "0013", down=True) as conn:
            assert "token_namespaces" not in inspect(conn).get_table_names()
            revoked: dict[int, object] = dict(
                conn.execute(text("SELECT id, revoked_at IS NOT NULL FROM api_tokens")).all()
            )
        # without the table a limited token would reach every namespace: it is revoked instead (fail closed)
        assert {k: bool(v) for k, v in revoked.items()} == {1: False, 2: True, 3: False}
        migrate(engine, "head")
    finally:
        engine.dispose()
    catalog = Catalog(empty_database_url)
    try:
        assert current_revision(catalog.engine) == head_revision()
    finally:
        catalog.dispose()
