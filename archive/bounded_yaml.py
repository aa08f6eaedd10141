"""Safe YAML for documents from elsewhere: no aliases, bounded nesting.

PyYAML's safe loader still expands aliases (a few hundred bytes of nested aliases make an exponential walk: a 1 KB
model card took 1.36 GB) and composes each level by recursion. No document we read needs either.
"""

from __future__ import annotations

from typing import Any

import yaml


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing aliases and nesting past ``max_depth``; ``document`` names what is read."""

    max_depth = 32
    document = "this document"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError(f"YAML aliases (*name) are not allowed in {self.document}")
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise yaml.YAMLError(f"nested more than {self.max_depth} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
