"""``modelarc lineage`` and ``modelarc diff``: how snapshots derive from each other, and what changed."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from modelarc.cli.options import ROW_LIMIT, json_option, with_archive
from modelarc.cli.output import console, emit_json, line

if TYPE_CHECKING:
    from rich.text import Text
    from rich.tree import Tree

    from modelarc.archive.repository import Archive
    from modelarc.registry.lineage_queries import LineageNode


def _label(node: LineageNode, arrow: str) -> Text:
    withdrawn = (" (withdrawn)", "red") if node.withdrawn else ""
    return line(f"{arrow} {node.relation}: {node.model}@{node.digest[:19]}", withdrawn)


def _grow(tree: Tree, nodes: Sequence[LineageNode], arrow: str) -> None:
    for node in nodes:
        _grow(tree.add(_label(node, arrow)), node.children, arrow)


@click.command(name="lineage")
@click.argument("ref")
@click.option(
    "--check",
    is_flag=True,
    help="Compare tensors with each declared parent and report the evidence (relatedness, not direction).",
)
@json_option
@with_archive
def lineage(archive: Archive, ref: str, check: bool, as_json: bool) -> None:
    """Ancestors and descendants of REF as a tree; --check weighs the tensor evidence for each declared parent."""
    from modelarc.archive.provenance.lineage import check_lineage, lineage_tree

    if check:
        report = check_lineage(archive, ref)
        if as_json:
            emit_json([dataclasses.asdict(r) for r in report])
            return
        if not report:
            console.print(f"{ref} declares no parents")
        for r in report:
            console.print(f"{r.relation} of {r.parent_model}@{r.parent_snapshot[:19]}:")
            if r.verdict == "parent_withdrawn":
                why = f" ({r.parent_withdrawn_reason})" if r.parent_withdrawn_reason else ""
                console.print(
                    f"  the parent was withdrawn{why} and its weights are gone from this archive, so there is "
                    "nothing to compare: the tensors can neither support nor contradict this parent"
                )
                continue
            console.print(
                f"  identical {r.identical}, changed {r.changed}, shape/dtype changed {r.shape_changed}, "
                f"only in child {r.only_in_child}, only in parent {r.only_in_parent}"
            )
            if r.median_relative_l2 is not None:
                console.print(
                    f"  relative L2 of changed tensors: median {r.median_relative_l2:.3g}, max {r.max_relative_l2:.3g}"
                )
            if r.delta_chunks:
                measured = (
                    f", {r.delta_ratio:.2f} of their size on their own" if r.delta_ratio is not None else ""
                )
                console.print(
                    f"  deltas: {r.delta_chunks} of {r.tensor_chunks} tensor chunks stored against this parent"
                    f"{measured}"
                )
            share = f"{r.supported_fraction:.1%} of the {r.compared_parameters} compared parameters"
            if r.verdict == "related":
                console.print(
                    f"  evidence: the tensors show the two are related ({share} identical or close); they "
                    f"cannot show which came first: that {r.parent_model} is the parent is as declared"
                )
            elif r.verdict == "partial":
                console.print(
                    line(
                        "  ",
                        ("WARNING", "bold red"),
                        f": partial evidence for {r.parent_model}: only {share} identical or close (shared "
                        "tensors, not necessarily a derivation)",
                    )
                )
            else:
                console.print(
                    line(
                        "  ",
                        ("WARNING", "bold red"),
                        f": declared parent {r.parent_model} shows no tensor evidence",
                    )
                )
        return
    from rich.tree import Tree

    found = lineage_tree(archive, ref)
    if as_json:
        emit_json(found.to_json())
        return
    root = Tree(line((found.model, "bold"), f"@{found.snapshot[:19]}"))
    ancestors = root.add("ancestors") if found.ancestors else None
    if ancestors is not None:
        _grow(ancestors, found.ancestors, "↑")
    if found.descendants:
        _grow(root.add("descendants"), found.descendants, "↓")
    console.print(root)


@click.command(name="diff")
@click.argument("ref_a")
@click.argument("ref_b")
@click.option("--limit", type=ROW_LIMIT, default=20, show_default=True, help="Changed tensors to list.")
@json_option
@with_archive
def diff(archive: Archive, ref_a: str, ref_b: str, limit: int, as_json: bool) -> None:
    """Tensors and files added, removed or changed from REF_A to REF_B (relative L2, max abs difference)."""
    from modelarc.archive.provenance.diff import diff_snapshots

    d = diff_snapshots(archive, ref_a, ref_b)
    if as_json:
        emit_json(dataclasses.asdict(d))
        return
    console.print(
        f"tensors: {d.identical} identical, {len(d.changed)} changed, {len(d.shape_changed)} shape/dtype changed, "
        f"{len(d.added)} added, {len(d.removed)} removed"
        # either way round: B may be the diverged one, or A (a diff from the broken run to the fixed one)
        + (f" ({n} with values that became or stopped being NaN or infinite)" if (n := _nonfinite(d)) else "")
    )
    console.print(
        f"files:   {d.files_identical} identical, {len(d.files_changed)} changed, {len(d.files_added)} added, "
        f"{len(d.files_removed)} removed"
    )
    for label, names in (
        ("file changed", d.files_changed),
        ("file added", d.files_added),
        ("file removed", d.files_removed),
        ("tensor added", d.added),
        ("tensor removed", d.removed),
    ):
        for name in names[:limit]:
            console.print(f"  {label}: {name}")
    for sc in d.shape_changed[:limit]:
        console.print(f"  shape/dtype: {sc.name} {sc.before} -> {sc.after}")
    if d.changed:
        from rich.table import Table

        table = Table(box=None)
        for col in ("TENSOR", "DTYPE", "SHAPE", "REL L2", "MAX |DIFF|"):
            table.add_column(col)
        for c in d.changed[:limit]:
            rel = f"{c.relative_l2:.3e}" if c.relative_l2 is not None else "-"
            mx = f"{c.max_abs_diff:.3e}" if c.max_abs_diff is not None else "-"
            if c.nonfinite:
                mx += f" (+{c.nonfinite:,} NaN/inf)"
            table.add_row(c.name, c.dtype, str(c.shape), rel, mx)
        console.print(table)


def _nonfinite(d: Any) -> int:
    return sum(1 for c in d.changed if c.nonfinite)


def register(group: click.Group) -> None:
    group.add_command(lineage)
    group.add_command(diff)
