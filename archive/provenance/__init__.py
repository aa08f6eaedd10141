"""What a snapshot came from and what became of it: training data, lineage, diffs, withdrawal."""
