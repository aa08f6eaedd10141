"""``modelarc run``, ``runs``, ``rerun`` and ``lock``: study archived models reproducibly."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from modelarc.cli.options import ROW_ID, FiniteFloatRange, json_option, with_archive
from modelarc.cli.output import console, emit_json, styled, terminal_safe

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.command(name="run")
@click.argument("ref")
@click.option(
    "--prompt",
    required=True,
    help="Text to continue: not empty, and with --max-new-tokens within the model's context.",
)
@click.option(
    "--max-new-tokens", type=click.IntRange(1, None), default=32, show_default=True, help="Generate at most this many tokens."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    # load_model's default, as from_pretrained's: torch's default dtype, not the dtype of the archived weights
    help="Default: float32, whatever dtype the weights were archived in (bfloat16 halves a BF16 model's memory; "
    "GGUF snapshots: what transformers' GGUF loader picks).",
)
# torch.manual_seed takes any unsigned 64-bit seed; a larger one would be a RuntimeError after the model loaded
@click.option(
    "--seed",
    type=click.IntRange(0, 2**64 - 1),
    default=0,
    show_default=True,
    help="Random seed for sampling (kept in a --record, so `rerun` repeats it).",
)
@click.option(
    "--temperature",
    type=FiniteFloatRange(0, None),
    help="Sample with this temperature (at least 1e-6); 0 is greedy, as is leaving out both sampling options.",
)
@click.option("--top-p", type=FiniteFloatRange(0, 1, min_open=True), help="Nucleus sampling: 0 < P <= 1.")
@click.option("--record", is_flag=True, help="Store a signed run record (see `modelarc runs`).")
@json_option
@with_archive
def run(
    archive: Archive,
    ref: str,
    prompt: str,
    max_new_tokens: int,
    device: str,
    dtype: str | None,
    seed: int,
    temperature: float | None,
    top_p: float | None,
    record: bool,
    as_json: bool,
) -> None:
    """Load REF and generate a continuation of --prompt (greedy unless sampling options are given)."""
    from modelarc.archive.runtime.runs import (  # torch: only when needed
        GenerationParams,
        generate,
        record_run,
    )

    params = GenerationParams(max_new_tokens, seed, temperature, top_p, device, dtype)
    result = generate(archive, ref, prompt, params)
    run_id = record_run(archive, result) if record else None
    if as_json:
        emit_json({**dataclasses.asdict(result), "run_id": run_id})
        return
    click.echo(terminal_safe(result.text, keep="\n\t"))  # generated text may hold escape sequences
    if run_id is not None:
        console.print(styled(f"recorded as run {run_id}", "dim"))


@click.command(name="runs")
@click.argument("ref", required=False)
@json_option
@with_archive
def runs(archive: Archive, ref: str | None, as_json: bool) -> None:
    """Recorded runs, newest first (of REF only, if given)."""
    from modelarc.archive.runtime.runs import list_runs

    rows = list_runs(archive, ref)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        if "unreadable" in r:  # a newer modelarc's run: none of its document's fields (they may mean else)
            console.print(
                f"{r['id']:>5}  {r['created_at']}  {r['snapshot'][:19]}  UNREADABLE: {r['unreadable']}"
            )
            continue
        if "damaged" in r:
            console.print(f"{r['id']:>5}  {r['created_at']}  DAMAGED: {r['damaged']}")
            continue
        console.print(
            f"{r['id']:>5}  {r['created_at']}  {r['ref']}  {r['snapshot'][:19]}  {r['prompt'][:40]!r} -> {r['output'][:40]!r}"
        )


@click.command(name="rerun")
@click.argument("run_id", type=ROW_ID)
@json_option
@with_archive
def rerun_cmd(archive: Archive, run_id: int, as_json: bool) -> None:
    """Re-execute a recorded run (after checking its signature) and say whether the output is identical."""
    from modelarc.archive.runtime.runs import rerun

    recorded, result, identical = rerun(archive, run_id)
    if as_json:
        emit_json(
            {
                "run_id": run_id,
                "identical": identical,
                "recorded_output": recorded["output"],
                "output": result.text,
                "snapshot": result.snapshot,
            }
        )
        return
    console.print("IDENTICAL" if identical else "DIFFERENT")
    if not identical:
        console.print(f"recorded: {recorded['output']!r}")
        console.print(f"now:      {result.text!r}")


@click.command(name="lock")
@click.argument("refs", nargs=-1, required=True)
@with_archive
def lock(archive: Archive, refs: tuple[str, ...]) -> None:
    """Print a lockfile pinning each REF to its snapshot id (modelarc lock REF... > modelarc.lock)."""
    from modelarc.archive.runtime.lockfile import make_lock

    click.echo(make_lock(archive, list(refs)), nl=False)


def register(group: click.Group) -> None:
    for command in (run, runs, rerun_cmd, lock):
        group.add_command(command)
