"""Many clients downloading one model from ``modelarc serve`` at once: aggregate throughput and the server's peak RSS.

    .venv/bin/python bench/serve.py                     # 1, 16 and 64 concurrent downloads
    .venv/bin/python bench/serve.py --clients 1,4,16    # other concurrency levels

A generated Llama-shaped BF16 model (bench/models.py, 9 layers: a 269 MB ``model.safetensors``) is pushed into a
fresh home. For each concurrency level N, a fresh ``modelarc serve`` process is started and N ``curl`` processes
download ``model.safetensors`` through the Hub route (``GET /NS/NAME/resolve/v1/model.safetensors``, what
``huggingface_hub`` asks for) all at once. The baseline is the same N downloads of the same file from a static file
server (``python -m http.server``) run the same way beside it. curl is the client so that the clients' own CPU
(2 cores are shared) stays small and the same on both sides.

Reported per level and server: aggregate throughput (bytes delivered / wall time from the first request to the
last byte) and the server process's peak resident memory (``VmHWM`` from /proc/PID/status, read as the last
download ends), beside its resident memory when idle before the downloads (after one request for the file's last
byte, so that libraries loaded and buffers made by the first download count as idle). Every download must deliver exactly the
file's size with status 200; after the peak is read, one more download per server is hashed and compared with the
source (not timed).
The claim under test: the server's memory grows by a bounded amount per download (docs/API.md, "Serving many
clients"), so 64 clients cost a small multiple of 1 client, not 64 times a whole read-ahead window.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import models as bench_models  # noqa: E402

MODELARC = [sys.executable, "-m", "modelarc.cli.main"]
REF = "bench/serve:v1"
FILE = "model.safetensors"
# 9 layers of the default shape: 134M parameters, a 269 MB BF16 file (the size the serving problem was measured at)
SHAPE = bench_models.LlamaShape(layers=9)
STARTUP_SECONDS = 60


@dataclass(frozen=True)
class Level:
    server: str
    clients: int
    seconds: float
    delivered: int
    idle_rss: int
    peak_rss: int

    @property
    def mb_per_s(self) -> float:
        return self.delivered / self.seconds / 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kib(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM`` line of /proc/PID/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def wait_for(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the server for {url} did not answer within {STARTUP_SECONDS} s")


def download_all(url: str, clients: int, size: int) -> float:
    """Start ``clients`` curl downloads of ``url`` at once; return the wall time until the last one ended.

    Each must deliver exactly ``size`` bytes with status 200 (curl's own count; the bytes go to /dev/null so that
    the clients cost little CPU).
    """
    counted = ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url]
    start = time.perf_counter()
    procs = [subprocess.Popen(counted, stdout=subprocess.PIPE) for _ in range(clients)]
    outputs = [p.communicate()[0].decode() for p in procs]
    seconds = time.perf_counter() - start
    for p, out in zip(procs, outputs, strict=True):
        if p.returncode != 0 or out.split() != ["200", str(size)]:
            raise RuntimeError(
                f"a download of {url} ended with curl exit {p.returncode}, status and size {out!r}"
            )
    return seconds


def check_bytes(url: str, sha256: str) -> None:
    """One more download, hashed: the server delivers the file byte for byte (not timed, after the peak is read)."""
    digest = hashlib.sha256()
    with httpx.stream("GET", url, timeout=60) as response:
        response.raise_for_status()
        for block in response.iter_raw(1 << 20):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise RuntimeError(f"{url} delivered bytes whose sha256 is {digest.hexdigest()}, not {sha256}")


def measure(server: str, cmd: list[str], url: str, probe: str, clients: int, size: int, sha256: str) -> Level:
    """Run a fresh server process, download through it with ``clients`` clients, read its memory, stop it."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(probe, proc)
        # warm up: the last byte of the file, so that libraries, the catalog and one decode are in the idle figure
        httpx.get(url, headers={"Range": f"bytes={size - 1}-"}, timeout=60).raise_for_status()
        idle = status_kib(proc.pid, "VmRSS")
        seconds = download_all(url, clients, size)
        peak = status_kib(proc.pid, "VmHWM")
        check_bytes(url, sha256)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return Level(server, clients, seconds, size * clients, idle, peak)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", default="1,16,64", help="comma-separated concurrency levels")
    args = p.parse_args()
    levels = [int(n) for n in args.clients.split(",")]
    if shutil.which("curl") is None:
        print("bench/serve.py needs curl (apt-get install curl)", file=sys.stderr)
        return 1
    folder = bench_models.llama_bf16(SHAPE)
    source = folder / FILE
    size = source.stat().st_size
    with open(source, "rb") as fh:
        sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
    print(
        f"{FILE}: {size / 1e6:.0f} MB ({SHAPE.parameter_count() / 1e6:.0f}M BF16 parameters), {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| server | clients | aggregate MB/s | wall s | idle RSS MB | peak RSS MB | peak - idle per client MB |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="modelarc-bench-serve-") as tmp:
        home = Path(tmp) / "home"
        env = {k: v for k, v in os.environ.items() if k != "MODELARC_DATABASE_URL"}  # SQLite inside the home
        subprocess.run([*MODELARC, "--home", home, "init"], check=True, stdout=subprocess.DEVNULL, env=env)
        subprocess.run(
            [*MODELARC, "--home", home, "push", folder, REF, "--no-progress"],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        ns, _, rest = REF.partition("/")
        name, _, tag = rest.partition(":")
        for clients in levels:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            served = measure(
                "modelarc serve (Hub resolve)",
                [*MODELARC, "--home", str(home), "serve", "--port", str(port)],
                f"{base}/{ns}/{name}/resolve/{tag}/{FILE}",
                f"{base}/openapi.json",
                clients,
                size,
                sha256,
            )
            port = free_port()
            static = measure(
                "static file server (baseline)",
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    str(folder),
                ],
                f"http://127.0.0.1:{port}/{FILE}",
                f"http://127.0.0.1:{port}/config.json",
                clients,
                size,
                sha256,
            )
            for level in (served, static):
                growth = (level.peak_rss - level.idle_rss) / level.clients / 1e6
                print(
                    f"| {level.server} | {level.clients} | {level.mb_per_s:.0f} | {level.seconds:.1f} "
                    f"| {level.idle_rss / 1e6:.0f} | {level.peak_rss / 1e6:.0f} | {growth:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
