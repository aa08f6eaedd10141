"""Model-aware layer: ingest a folder into a manifest, restore it, sign and verify it."""
