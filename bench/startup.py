"""The fixed cost of a command (issue 12): each command as a process on a tiny model, against a bare interpreter.

On a model this small almost nothing is data work, so what a command costs is what every command pays before and
after its data: interpreter start-up, imports (SQLAlchemy, the ORM classes, click, cryptography), opening the
catalog, configuring the mappers, the store lock, signing or checking the signature, closing the catalog.

    python -c pass               the baseline every row is divided by
    modelarc --help              click and the command table alone
    modelarc ls                  the catalog read path
    modelarc push (unchanged)    re-push of the tiny model: ingest, sign, record
    modelarc pull                into a fresh folder: resolve, check the signature, restore

Each row is the median of ``--repeat`` runs, interleaved with the baseline so a busy spell hits both; wall time and
the process's CPU time (user + system, from wait4) are both printed, since on a shared machine CPU time is the
steadier of the two. Not a test: nothing here fails on a number.

    .venv/bin/python bench/startup.py
    .venv/bin/python bench/startup.py --repeat 15
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

MODELARC = Path(sys.executable).with_name("modelarc")  # the console script of this venv


def tiny_model(folder: Path) -> Path:
    """A few small FP32 tensors and a config: ~130 KB, so the data work is negligible."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"layers.{i}.weight": rng.standard_normal((64, 64)).astype(np.float32) for i in range(8)}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text('{"model_type": "llama", "hidden_size": 64}\n')
    return folder


def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process) for one run; raises if it fails."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {stderr.strip()}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="modelarc-startup-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "MODELARC_HOME": str(root / "home")}
        env.pop("MODELARC_DATABASE_URL", None)
        model = tiny_model(root / "model")
        mc = str(MODELARC)
        run([mc, "init"], env, root)
        run([mc, "push", str(model), "bench/tiny:v1", "--no-progress"], env, root)
        dest = root / "pulled"
        rows: dict[str, list[str]] = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "modelarc --help": [mc, "--help"],
            "modelarc ls": [mc, "ls"],
            "modelarc push (unchanged)": [mc, "push", str(model), "bench/tiny:v1", "--no-progress"],
            "modelarc pull": [mc, "pull", "bench/tiny:v1", str(dest), "--no-progress"],
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
        for i in range(args.repeat):
            order = list(rows) if i % 2 == 0 else list(reversed(rows))
            for name in order:
                shutil.rmtree(dest, ignore_errors=True)
                samples[name].append(run(rows[name], env, root))

    base_wall = statistics.median(w for w, _ in samples["python -c pass"])
    base_cpu = statistics.median(c for _, c in samples["python -c pass"])
    print(
        f"median of {args.repeat} interleaved runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print("| command | wall ms | x bare | CPU ms | x bare |\n|---|---|---|---|---|")
    for name, pairs in samples.items():
        wall = statistics.median(w for w, _ in pairs)
        cpu = statistics.median(c for _, c in pairs)
        print(
            f"| {name} | {wall * 1000:.0f} | {wall / base_wall:.1f} | {cpu * 1000:.0f} | {cpu / base_cpu:.1f} |"
        )


if __name__ == "__main__":
    from project_bytecode import compile_project  # beside this file

    compile_project()  # first: each command timed would otherwise recompile every stale module
    main()
