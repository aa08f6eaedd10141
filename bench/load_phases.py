"""Where ``load_model`` + a first forward spends its time, per thread and phase, beside ``from_pretrained`` + a first
forward (issue 12, item 4; the ratio itself is ``bench/load.py``'s).

    .venv/bin/python bench/load_phases.py                        # bf16, fp32 and fp32-as-bf16, 5 rounds
    .venv/bin/python bench/load_phases.py --models fp32 --rounds 3

Each model of ``bench/load.py`` is pushed once into a fresh home; one untimed load of each side warms the page
cache, then ``--rounds`` loads of each side run interleaved. The functions of the load path are wrapped
(``bench/phases.py``) to add up, per thread group, wall time, the thread's CPU time and the time it was runnable
but waiting for a CPU (other processes); the table gives them per load (summed over the rounds, divided by
``--rounds``). Nested rows (indented) are parts of the row above. ``decode job`` is one job of the loader's
pool: its chunks' reads, plane decoding (Huffman exponents, zstd), plane join, sha256 (two buffers at once),
populate (mapping the fresh tensor pages at once) and, for a chunk changing dtype, torch's cast, which is the
rest of the job. The wrappers cost a few microseconds a call (~1,000 calls a load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # bench/ is not a package

import load as bench_load  # noqa: E402
import phases  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from modelarc.archive.repository import Archive  # noqa: E402
from modelarc.archive.runtime import loading, models  # noqa: E402
from modelarc.storage import store as store_module  # noqa: E402
from modelarc.storage.codecs import floatplanes  # noqa: E402


def _group(name: str) -> str:
    """``phases.group``, with every short-lived pool (a small file's reader: config.json) under one name."""
    return "small-file pools" if name.startswith("ThreadPoolExecutor") else phases_group(name)


phases_group = phases.group


def instrument() -> None:
    phases.group = _group
    phases.wrap(models, "open_snapshot", "snapshot + manifest")
    phases.wrap(models, "_empty_model", "model on meta")
    phases.wrap(models, "_load_weights", "weights")
    phases.wrap(models, "_compute_buffers", "buffers")
    phases.wrap(loading, "_decode_job", "decode job")
    phases.wrap(store_module.ObjectStore, "get_stored", "object read")
    phases.wrap(floatplanes, "_coded_planes", "plane decode")
    phases.wrap(floatplanes._planes, "joined", "plane join")
    phases.wrap(store_module, "sha256_hexdigests", "sha256")
    phases.wrap(loading, "populate_for_write", "populate")


def _phase(label: str, step: Callable[[], Any]) -> None:
    """``step`` counted as a phase of its own at depth 0, as ``phases.wrap`` counts a wrapped call."""
    delay, wall, cpu = phases.run_delay(), time.perf_counter(), time.thread_time()
    step()
    phases.add(label, 0, wall, cpu, delay)


def measure(key: str, cache: Path, rounds: int) -> None:
    title, dtype, make = bench_load.MODELS[key]
    folder = make(cache)
    ids = torch.arange(16).unsqueeze(0) + 1
    with tempfile.TemporaryDirectory(prefix="modelarc-bench-load-phases-") as tmp:
        archive, _ = Archive.init(Path(tmp) / "home")
        with archive:
            archive.push(folder, bench_load.REF)

            def ours() -> None:
                model = models.load_model(archive, bench_load.REF, device="cpu", dtype=dtype)
                _phase("forward", lambda: bench_load._forward(model, ids))

            def theirs() -> None:
                made: list[Any] = []
                _phase(
                    "from_pretrained",
                    lambda: made.append(
                        transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
                    ),
                )
                model = made[0]
                _phase("from_pretrained forward", lambda: bench_load._forward(model, ids))

            ours(), theirs()  # warm-up
            phases.ROWS.clear()
            sides: dict[str, tuple[list[float], list[float]]] = {
                "load_model": ([], []),
                "from_pretrained": ([], []),
            }
            for _ in range(rounds):
                for name, step in (("load_model", ours), ("from_pretrained", theirs)):
                    wall, cpu = time.perf_counter(), time.process_time()
                    step()
                    sides[name][0].append(time.perf_counter() - wall)
                    sides[name][1].append(time.process_time() - cpu)
    print(
        f"[{key}] {title}, dtype {str(dtype).removeprefix('torch.')}, {rounds} rounds, load {os.getloadavg()[0]:.1f}"
    )
    for name, (walls, cpus) in sides.items():
        print(
            f"  {name:16s} + forward  wall median {statistics.median(walls):.3f} s   process CPU {statistics.median(cpus):.3f} s"
        )
    print(
        f"  {'thread / phase':44s} {'wall':>7s} {'cpu':>7s} {'waiting':>7s} {'calls':>6s}   (per load, seconds)"
    )
    for (group, label, level), (wall, cpu, calls, delay) in sorted(phases.ROWS.items(), key=_order):
        print(
            f"  {group[:18]:18s} {'  ' * level + label:25s} {wall / rounds:7.3f} {cpu / rounds:7.3f} "
            f"{delay / rounds:7.3f} {calls / rounds:6.0f}"
        )
    phases.ROWS.clear()


_ORDER = [
    "snapshot + manifest",
    "model on meta",
    "weights",
    "buffers",
    "forward",
    "from_pretrained",
    "from_pretrained forward",
    "decode job",
    "object read",
    "plane decode",
    "plane join",
    "populate",
    "sha256",
]


def _order(item: tuple[tuple[str, str, int], list[float]]) -> tuple[bool, int]:
    (group, label, _level), _row = item
    return group.startswith("modelarc-"), _ORDER.index(label) if label in _ORDER else len(_ORDER)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models",
        default="bf16,fp32,fp32-as-bf16",
        help="comma-separated subset of: " + ", ".join(bench_load.MODELS),
    )
    p.add_argument("--rounds", type=int, default=5, help="timed loads per side")
    p.add_argument(
        "--cache",
        type=Path,
        default=bench_load.bench_models.DEFAULT_CACHE,
        help="where generated models live",
    )
    args = p.parse_args(argv)
    os.environ.pop("MODELARC_DATABASE_URL", None)  # SQLite inside the fresh home
    transformers.utils.logging.disable_progress_bar()
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in bench_load.MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(bench_load.MODELS)}")
    instrument()
    for key in keys:
        measure(key, args.cache, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
