"""Draw a snapshot's lineage (a ``LineageTree``) as an inline SVG: ancestors above, descendants below.

Server-side, no JavaScript: each generation is a row of boxes, each box links to its snapshot page, and each edge is
labelled with its relation (finetune, quantized, ...). Every string is XML-escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape, quoteattr

from modelarc.archive.provenance.lineage import LineageTree
from modelarc.registry.lineage_queries import LineageNode

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 210, 46, 24, 56, 12


def _levels(nodes: Sequence[LineageNode], sign: int) -> dict[int, list[LineageNode]]:
    """Breadth-first generations: -1, -2, ... for ancestors, 1, 2, ... for descendants; each snapshot once."""
    out: dict[int, list[LineageNode]] = {}
    seen: set[str] = set()
    frontier = [(n, sign) for n in nodes]
    while frontier:
        nxt = []
        for node, depth in frontier:
            if node.digest not in seen:
                seen.add(node.digest)
                out.setdefault(depth, []).append(node)
            nxt += [(c, depth + sign) for c in node.children]
        frontier = nxt
    return out


def _edges(root: str, nodes: Sequence[LineageNode], up: bool) -> list[tuple[str, str, str]]:
    """(parent digest, child digest, relation) for every edge in the tree."""
    out = []
    stack = [(root, n) for n in nodes]
    while stack:
        holder, node = stack.pop()
        parent, child = (node.digest, holder) if up else (holder, node.digest)
        out.append((parent, child, node.relation or ""))
        stack += [(node.digest, c) for c in node.children]
    return sorted(set(out))


def lineage_svg(tree: LineageTree, link: Callable[[str, str], str]) -> str:
    """``link(model, digest)`` gives the URL of a snapshot page."""
    root = LineageNode(0, tree.snapshot, tree.model, None, False)  # drawn as the root, whatever its status
    levels = {0: [root], **_levels(tree.ancestors, -1), **_levels(tree.descendants, 1)}
    depths = sorted(levels)
    widest = max(len(v) for v in levels.values())
    width = PAD * 2 + widest * BOX_W + (widest - 1) * GAP_X
    height = PAD * 2 + len(depths) * BOX_H + (len(depths) - 1) * GAP_Y
    pos: dict[str, tuple[int, int]] = {}
    for row, depth in enumerate(depths):
        row_nodes = levels[depth]
        row_w = len(row_nodes) * BOX_W + (len(row_nodes) - 1) * GAP_X
        x0 = (width - row_w) // 2
        for i, node in enumerate(row_nodes):
            pos.setdefault(node.digest, (x0 + i * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y)))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#667"/></marker></defs>',
    ]
    edges = _edges(root.digest, tree.ancestors, up=True) + _edges(root.digest, tree.descendants, up=False)
    for parent, child, relation in edges:
        if parent not in pos or child not in pos:
            continue
        (px, py), (cx, cy) = pos[parent], pos[child]
        x1, y1, x2, y2 = px + BOX_W // 2, py + BOX_H, cx + BOX_W // 2, cy
        parts.append(
            f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#667" stroke-width="1.5" '
            'marker-end="url(#arrow)"/>'
        )
        parts.append(
            f'<text x="{(x1 + x2) // 2 + 6}" y="{(y1 + y2) // 2 + 4}" class="relation" font-size="12" '
            f'fill="#445">{escape(relation)}</text>'
        )
    for depth in depths:
        for node in levels[depth]:
            x, y = pos[node.digest]
            is_root = node.digest == root.digest
            fill = "#dbeafe" if is_root else "#fde2e2" if node.withdrawn else "#f4f4f6"
            short = node.digest.hex[:12]
            parts.append(
                f'<a href={quoteattr(link(node.model, node.digest))} class="lineage-node">'
                f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="#99a"/>'
                f'<text x="{x + 10}" y="{y + 19}" font-size="13" font-weight="600">{escape(node.model)}</text>'
                f'<text x="{x + 10}" y="{y + 36}" font-size="11" fill="#555">{short}'
                f"{' (withdrawn)' if node.withdrawn else ''}</text></a>"
            )
    parts.append("</svg>")
    return "".join(parts)
