"""Parallel Hub downloads: `push hf://` of a sharded model with --jobs 1 vs --jobs N from the Hub imitation
(tests/hubserver.py) on 127.0.0.1, which sends each file body at a fixed rate per connection, as a CDN throttles
each connection. Each run is a fresh process into a fresh home and HF cache; the runs take turns. Prints the median
wall time of each and their ratio; no target (the ratio is bounded by the shard count and --jobs, not by modelarc).

    python bench/hf_parallel.py [--shards 4] [--shard-mb 8] [--rate-mb 4] [--jobs 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hubserver import HubServer  # noqa: E402


def sharded_model(folder: Path, shards: int, shard_mb: int) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for n in range(shards):
        weights = rng.standard_normal(shard_mb * (1 << 20) // 4).astype(np.float32)
        save_file(
            {f"layers.{n}.weight": weights}, str(folder / f"model-{n + 1:05d}-of-{shards:05d}.safetensors")
        )
    (folder / "config.json").write_text('{"model_type": "llama"}\n')
    return folder


def push(hub: HubServer, work: Path, jobs: int, run: int) -> float:
    home = work / f"home-{jobs}-{run}"
    env = {
        **os.environ,
        "MODELARC_HOME": str(home),
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(work / f"hf-{jobs}-{run}"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
    }
    env.pop("MODELARC_DATABASE_URL", None)
    cli = [sys.executable, "-m", "modelarc.cli.main"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run(
        [*cli, "push", "hf://org/bench", f"org/bench:j{jobs}", "--jobs", str(jobs), "--no-progress"],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-mb", type=int, default=8)
    parser.add_argument("--rate-mb", type=float, default=4.0, help="MB/s per connection")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelarc-bench-hf-") as tmp:
        work = Path(tmp)
        hub = HubServer().start()
        try:
            hub.add("org/bench", sharded_model(work / "served", args.shards, args.shard_mb))
            hub.rate = args.rate_mb * 1e6
            times: dict[int, list[float]] = {1: [], args.jobs: []}
            for run in range(args.repeat):
                for jobs in times:
                    times[jobs].append(push(hub, work, jobs, run))
        finally:
            hub.stop()
    total = args.shards * args.shard_mb
    one, many = statistics.median(times[1]), statistics.median(times[args.jobs])
    print(
        f"{args.shards} shards x {args.shard_mb} MiB, {args.rate_mb:g} MB/s per connection, {args.repeat} runs each"
    )
    for jobs, samples in times.items():
        print(
            f"  --jobs {jobs}: median {statistics.median(samples):.2f} s  ({', '.join(f'{t:.2f}' for t in samples)})"
        )
    print(f"  speed-up --jobs {args.jobs} vs --jobs 1: {one / many:.2f}x  ({total} MiB)")


if __name__ == "__main__":
    main()
