"""Named values the catalog keeps about itself (the ``catalog_settings`` table)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from modelarc.registry.models import CatalogSetting

STORE_ID = "store_id"


def get_setting(s: Session, key: str) -> str | None:
    row = s.get(CatalogSetting, key)
    return None if row is None else row.value


def set_setting(s: Session, key: str, value: str) -> None:
    row = s.get(CatalogSetting, key)
    if row is None:
        s.add(CatalogSetting(key=key, value=value))
    else:
        row.value = value
    s.flush()
