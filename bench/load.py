"""load_model from the archive vs transformers' from_pretrained from the original folder, each with its first forward.

    .venv/bin/python bench/load.py                       # all three rows, 5 runs each
    .venv/bin/python bench/load.py --models bf16 --repeat 3
    .venv/bin/python bench/load.py --no-cache            # without the cached second-load rows

Models: the generated Llama-shaped checkpoints of bench/models.py (168M parameters, tied embeddings, cached in
``/tmp/modelarc-bench``): ``bf16`` (336 MB, loaded as bfloat16), ``fp32`` (its exact FP32 upcast, 672 MB, loaded as
float32) and ``fp32-as-bf16`` (the FP32 file loaded as bfloat16: every tensor changes dtype on the way). Each is
pushed once into a fresh home, then both sides are timed in the same run, interleaved:

    modelarc   load_model(archive, ref, device="cpu", dtype=D)   + one forward of 16 tokens
    cached     load_model(archive, ref, device="cpu", dtype=D, cache=True), a second load (the load cache holds
               the snapshot: its files are mapped, nothing decoded) + the same forward
    baseline   AutoModelForCausalLM.from_pretrained(folder, dtype=D)  + the same forward

The first cached load (the fill: decode, hash each file whole, write and fsync into the cache) is timed once and
printed beside them, against the uncached load; ``--no-cache`` leaves the cached rows out.

Then the same two loads as a user's script runs them, each in a fresh process (``python -c``: import torch and
transformers or modelarc, load, one forward), interleaved, median of ``min(--repeat, 3)``: wall and CPU time from
``wait4``. This row counts what the in-process row leaves out: imports, and the memory a fresh process must map for
the weights (``from_pretrained`` maps the warm safetensors file instead; on this VM a fresh page costs ~0.7 s per
GB, serialised within a process: bench/README.md "Fresh memory"). It has no target of its own: the issue's row is
the in-process one. ``--no-processes`` leaves it out.

Page caches are warm for both (one untimed load each first, which also checks that the two give identical logits).
The ratio is modelarc / baseline (lower is better), median of ``--repeat``; target <= 1.30x. Each row also gives
the median CPU seconds of the process (all threads): on a shared machine wall time swings with the neighbours' load,
CPU time much less, so the CPU-time ratio is the steadier A/B figure (it is not the target: a load that keeps both
cores busy takes less wall time than CPU time). A benchmark, not a
test: a MISS never fails the process; an exception (or differing logits) does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # bench/ is not a package; models.py sits beside this file

import models as bench_models  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from modelarc.archive.repository import Archive  # noqa: E402
from modelarc.archive.runtime.models import load_model  # noqa: E402

TARGET = 1.3
REF = "bench/llama:v1"
MODELS: dict[str, tuple[str, torch.dtype, Callable[[Path], Path]]] = {
    "bf16": ("Llama-like BF16 (generated)", torch.bfloat16, lambda c: bench_models.llama_bf16(cache=c)),
    "fp32": ("same, FP32 upcast", torch.float32, lambda c: bench_models.llama_fp32_upcast(cache=c)),
    "fp32-as-bf16": (
        "FP32 upcast loaded as BF16",
        torch.bfloat16,
        lambda c: bench_models.llama_fp32_upcast(cache=c),
    ),
}


def _forward(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits: torch.Tensor = model(ids).logits
    return logits


def _timed(step: Callable[[], Any], cpu: list[float]) -> float:
    """Wall seconds of ``step``; its CPU seconds (every thread of this process) are appended to ``cpu``, the figure
    that stays comparable when other work shares the cores."""
    started, started_cpu = time.perf_counter(), time.process_time()
    step()
    cpu.append(time.process_time() - started_cpu)
    return time.perf_counter() - started


# what a user's script does, each side in a fresh process; argv: REF or folder, dtype name
SCRIPT_ARCHIVE = """
import sys, torch, modelarc
model = modelarc.load_model(sys.argv[1], device="cpu", dtype=sys.argv[2])
with torch.no_grad():
    model(torch.arange(16).unsqueeze(0) + 1)
"""
SCRIPT_FOLDER = """
import sys, torch, transformers
transformers.utils.logging.disable_progress_bar()
model = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=getattr(torch, sys.argv[2]))
with torch.no_grad():
    model(torch.arange(16).unsqueeze(0) + 1)
"""


def _process(script: str, *args: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, from wait4) of ``python -c script args`` in a fresh process."""
    os.sync()
    # stderr into a file, not a pipe: a pipe read only after wait4 blocks a child that writes more than it holds
    # (64 KiB: warnings, a long traceback), and wait4 then waits for ever
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", script, *args], env=env, stderr=errors)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not think it still runs
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"a load in a fresh process failed: {stderr[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def measure_processes(key: str, folder: Path, home: Path, dtype: torch.dtype, repeat: int) -> str:
    """The process row: each side as a fresh ``python -c``, interleaved."""
    name = str(dtype).removeprefix("torch.")
    env = {**os.environ, "MODELARC_HOME": str(home)}
    arc: list[tuple[float, float]] = []
    hf: list[tuple[float, float]] = []
    for _ in range(repeat):
        arc.append(_process(SCRIPT_ARCHIVE, REF, name, env=env))
        hf.append(_process(SCRIPT_FOLDER, str(folder), name))
    arc_s, hf_s = statistics.median(w for w, _c in arc), statistics.median(w for w, _c in hf)
    arc_cpu, hf_cpu = statistics.median(c for _w, c in arc), statistics.median(c for _w, c in hf)
    return (
        f"  as processes (import + load + forward, fresh memory): load_model {arc_s:.2f} s (cpu {arc_cpu:.2f}), "
        f"from_pretrained {hf_s:.2f} s (cpu {hf_cpu:.2f}): {arc_s / hf_s:.2f}x (CPU {arc_cpu / hf_cpu:.2f}x), "
        f"runs {', '.join(f'{w:.2f}' for w, _c in arc)} vs {', '.join(f'{w:.2f}' for w, _c in hf)}"
    )


def measure(key: str, cache: Path, repeat: int, with_cache: bool = True, processes: bool = True) -> float:
    title, dtype, make = MODELS[key]
    folder = make(cache)
    size = bench_models.folder_bytes(folder)
    ids = torch.arange(16).unsqueeze(0) + 1
    with tempfile.TemporaryDirectory(prefix="modelarc-bench-load-") as tmp:
        archive, _ = Archive.init(Path(tmp) / "home")
        with archive:
            archive.push(folder, REF)

            def ours() -> torch.Tensor:
                return _forward(load_model(archive, REF, device="cpu", dtype=dtype), ids)

            def cached() -> torch.Tensor:
                return _forward(load_model(archive, REF, device="cpu", dtype=dtype, cache=True), ids)

            def theirs() -> torch.Tensor:
                model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
                return _forward(model, ids)

            expected = theirs()
            if not torch.equal(ours(), expected):  # also the warm-up of both sides
                raise RuntimeError(f"{key}: load_model and from_pretrained give different logits")
            fill_s = 0.0
            if with_cache:
                subprocess.run(["sync"], check=True)
                started = time.perf_counter()
                filled = cached()  # the first cached load fills the cache: timed once
                fill_s = time.perf_counter() - started
                if not (torch.equal(filled, expected) and torch.equal(cached(), expected)):
                    raise RuntimeError(
                        f"{key}: a cached load_model and from_pretrained give different logits"
                    )
            t_arc, t_cached, t_hf = [], [], []
            c_arc: list[float] = []
            c_cached: list[float] = []
            c_hf: list[float] = []
            for _ in range(repeat):
                t_arc.append(_timed(ours, c_arc))
                if with_cache:
                    t_cached.append(_timed(cached, c_cached))
                t_hf.append(_timed(theirs, c_hf))
        process_row = (
            measure_processes(key, folder, Path(tmp) / "home", dtype, min(repeat, 3)) if processes else None
        )
    arc_s, hf_s = statistics.median(t_arc), statistics.median(t_hf)
    ratio = arc_s / hf_s
    lines = [
        f"[{key}] {title}, {bench_models.LlamaShape().parameter_count() / 1e6:.0f}M parameters, "
        f"{size / 1e6:.0f} MB, dtype {str(dtype).removeprefix('torch.')}",
        f"  load_model + forward (archive)       {arc_s:6.3f} s   runs {', '.join(f'{t:.2f}' for t in t_arc)}"
        f"   cpu {statistics.median(c_arc):.3f} s",
    ]
    if with_cache:
        cached_s = statistics.median(t_cached)
        lines.append(
            f"  load_model cache=True, 2nd load      {cached_s:6.3f} s   runs {', '.join(f'{t:.2f}' for t in t_cached)}"
            f"   cpu {statistics.median(c_cached):.3f} s"
        )
    lines += [
        f"  from_pretrained + forward (folder)   {hf_s:6.3f} s   runs {', '.join(f'{t:.2f}' for t in t_hf)}"
        f"   cpu {statistics.median(c_hf):.3f} s",
        f"  ratio {ratio:.2f}x  target <= {TARGET:.2f}x  {'PASS' if ratio <= TARGET else 'MISS'}"
        f"   (CPU-time ratio {statistics.median(c_arc) / statistics.median(c_hf):.2f}x)",
    ]
    if with_cache:
        lines.append(
            f"  cached ratio {cached_s / hf_s:.2f}x vs from_pretrained (target <= {TARGET:.2f}x "
            f"{'PASS' if cached_s / hf_s <= TARGET else 'MISS'}); first cached load (fill) {fill_s:.3f} s, "
            f"{fill_s / arc_s:.2f}x an uncached load"
        )
    if process_row:
        lines.append(process_row)
    print("\n".join(lines), flush=True)
    return ratio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models", default="bf16,fp32,fp32-as-bf16", help="comma-separated subset of: " + ", ".join(MODELS)
    )
    p.add_argument("--repeat", type=int, default=5, help="timed runs per side; the median is reported")
    p.add_argument(
        "--cache", type=Path, default=bench_models.DEFAULT_CACHE, help="where generated models live"
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="leave out the load_model(..., cache=True) rows (the load cache)",
    )
    p.add_argument(
        "--no-processes",
        action="store_true",
        help="leave out the row of each side as a fresh process (imports and fresh memory included)",
    )
    args = p.parse_args(argv)
    os.environ.pop("MODELARC_DATABASE_URL", None)  # SQLite inside the fresh home
    transformers.utils.logging.disable_progress_bar()  # from_pretrained's "Loading weights" bar, on both sides
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {os.cpu_count()} cores")
    for key in keys:
        measure(key, args.cache, args.repeat, with_cache=not args.no_cache, processes=not args.no_processes)
    return 0


if __name__ == "__main__":
    from project_bytecode import compile_project  # beside this file

    compile_project()  # first: each command timed would otherwise recompile every stale module
    raise SystemExit(main())
