"""Content-addressed object store: ids, self-describing object headers, codecs, backends. Knows no models."""

from modelarc.storage.ids import ObjectId
from modelarc.storage.store import ObjectStore, PutResult, Replacing

__all__ = ["ObjectId", "ObjectStore", "PutResult", "Replacing"]
