"""Moving snapshots between archives: the HTTP client, push/pull, snapshot offers and commits, Hub import."""
