"""Pull over HTTP (``pull --remote --jobs 2`` from ``modelarc serve``) vs a local pull of the same snapshot.

    .venv/bin/python bench/http_pull.py [--models mini,bf16] [--repeat 3] [--jobs 2]

Both sides run the real CLI in a subprocess on this machine and write the same files into a fresh folder:

    local   modelarc --home SERVER pull REF DEST
    http    modelarc --home CLIENT pull REF DEST --remote origin --jobs 2   (a fresh, empty client home each run)

The HTTP side does strictly more: it copies every object into the client's own store (durable, verified on
receipt), records the snapshot and checks its signature, then restores. Throughput ratio = local time / HTTP
time; target >= 0.9. Timings are medians of ``--repeat`` runs, interleaved; dirty pages are flushed before each.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import models as bench_models  # noqa: E402

MODELARC = [sys.executable, "-m", "modelarc.cli.main"]
REF = "bench/model:v1"
TARGET = 0.9  # issue 12; it was 0.7
MODELS = {
    "mini": ("all-MiniLM-L6-v2 FP32 (real)", lambda: bench_models.MINILM_DIR),
    "bf16": ("Llama-like BF16 (generated)", lambda: bench_models.llama_bf16()),
}


def run(*args: object) -> None:
    subprocess.run([*MODELARC, *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def timed(*args: object) -> float:
    os.sync()
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_model(key: str, work: Path, repeat: int, jobs: int) -> tuple[str, int, float, float]:
    label, folder_fn = MODELS[key]
    folder = folder_fn()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    server_home = work / f"{key}-server"
    run("--home", server_home, "init")
    run("--home", server_home, "push", folder, REF, "--no-progress")
    port = free_port()
    server = subprocess.Popen(
        [*MODELARC, "--home", str(server_home), "serve", "--port", str(port)], stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        local, http = [], []
        expected = digests(folder)
        for i in range(repeat):
            dest = work / f"{key}-local-{i}"
            local.append(timed("--home", server_home, "pull", REF, dest, "--no-progress"))
            assert digests(dest) == expected, "local pull differs from the source"
            shutil.rmtree(dest)
            client = work / f"{key}-client-{i}"
            run("--home", client, "init")
            run("--home", client, "remote", "add", "origin", url)
            dest = work / f"{key}-http-{i}"
            http.append(
                timed("--home", client, "pull", REF, dest, "--remote", "origin", "--jobs", jobs, "--no-progress")
            )
            assert digests(dest) == expected, "HTTP pull differs from the source"
            shutil.rmtree(dest)
            shutil.rmtree(client)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return label, size, statistics.median(local), statistics.median(http)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mini,bf16")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    print(f"| model | size | local pull | HTTP pull --jobs {args.jobs} | throughput HTTP/local | target >= {TARGET} |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="modelarc-bench-http-") as tmp:
        for key in args.models.split(","):
            label, size, local_s, http_s = bench_model(key, Path(tmp), args.repeat, args.jobs)
            ratio = local_s / http_s
            verdict = "PASS" if ratio >= TARGET else "MISS"
            print(
                f"| {label} | {size / 1e6:.0f} MB | {local_s:.2f} s ({size / local_s / 1e6:.0f} MB/s) "
                f"| {http_s:.2f} s ({size / http_s / 1e6:.0f} MB/s) | {ratio:.2f}x | {verdict} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    from project_bytecode import compile_project  # beside this file

    compile_project()  # first: each command timed would otherwise recompile every stale module
    raise SystemExit(main())
