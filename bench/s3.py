"""Push and pull against an S3 API, against uploading/downloading the same files with boto3 directly.

    python bench/s3.py                      # the generated BF16 model (~336 MB) and 500 small files, 3 repeats
    python bench/s3.py --repeat 1 --small 200

The S3 server is moto's (``moto_server``), started as its own process on 127.0.0.1 so that it does not share an
interpreter (and a GIL) with either side. Both sides run as processes, as a user runs them:

    push      `modelarc push` into a fresh home whose store is s3://BUCKET/...   vs  boto3 `upload_file` of every
                                                                                   file (default TransferConfig)
    pull      `modelarc pull` into a fresh folder                                vs  boto3 `download_file`
    small     `modelarc push` of a folder of many small files: objects per second, vs boto3 `upload_file` of them

Targets (issue 13): push <= 1.5x and pull <= 1.5x the baseline. moto keeps every object in its own memory, so its
speed is not a real service's; both sides pay the same server. Benchmarks, not tests: a MISS never fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import models as bench_models  # noqa: E402

MODELARC = Path(sys.executable).with_name("modelarc")
MOTO = Path(sys.executable).with_name("moto_server")
TARGETS = {"push": 1.5, "pull": 1.5}

BASELINE = r"""
import sys, time
from pathlib import Path
import boto3
mode, bucket, prefix, folder = sys.argv[1:5]
client = boto3.client("s3")
root = Path(folder)
if mode == "up":
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root)}")
else:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for entry in page.get("Contents", []):
            target = root / entry["Key"][len(prefix) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, entry["Key"], str(target))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed: {done.stderr.decode()[-1500:]}")
    return time.perf_counter() - start


def small_files(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"part-{i:05d}.json").write_bytes(os.urandom(2048) + f"{i}".encode())
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small", type=int, default=500, help="how many small files (objects/s row)")
    args = parser.parse_args(argv)

    model = bench_models.llama_bf16()
    work = Path(tempfile.mkdtemp(prefix="modelarc-bench-s3-"))
    port = free_port()
    moto = start_moto(port)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.pop("MODELARC_DATABASE_URL", None)
    env.pop("MODELARC_STORE_URL", None)
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        small = small_files(work / "small", args.small)
        for p in model.rglob("*"):  # warm page cache for both sides
            if p.is_file():
                p.read_bytes()
        rows: dict[str, list[float]] = {k: [] for k in ("push", "push_base", "pull", "pull_base", "small",
                                                         "small_base")}
        for r in range(args.repeat):
            bucket = f"bench-{r}-{os.getpid()}"
            client.create_bucket(Bucket=bucket)
            home = work / f"home-{r}"
            home_env = {**env, "MODELARC_HOME": str(home)}
            subprocess.run([str(MODELARC), "init", "--store", f"s3://{bucket}/arc"], env=home_env, check=True,
                           capture_output=True)
            rows["push_base"].append(timed([sys.executable, "-c", BASELINE, "up", bucket, "raw", str(model)], env))
            rows["push"].append(timed([str(MODELARC), "push", str(model), "bench/m:v1", "--no-progress"], home_env))
            out_base, out = work / f"base-out-{r}", work / f"out-{r}"
            rows["pull_base"].append(timed([sys.executable, "-c", BASELINE, "down", bucket, "raw", str(out_base)],
                                           env))
            rows["pull"].append(timed([str(MODELARC), "pull", "bench/m:v1", str(out), "--no-progress"], home_env))
            for name in os.listdir(model):
                if (model / name).read_bytes() != (out / name).read_bytes():
                    raise RuntimeError(f"pull is not byte-identical: {name}")
            rows["small_base"].append(timed([sys.executable, "-c", BASELINE, "up", bucket, "rawsmall", str(small)],
                                            env))
            rows["small"].append(timed([str(MODELARC), "push", str(small), "bench/small:v1", "--no-progress"],
                                       home_env))
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(out_base, ignore_errors=True)
        size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(f"S3 (moto_server on 127.0.0.1), model {size / 1e6:.0f} MB BF16, median of {args.repeat}")
        print(f"{'step':<28}{'modelarc':>12}{'baseline':>12}{'ratio':>8}{'target':>8}  verdict")
        for step in ("push", "pull"):
            ratio = med[step] / med[f"{step}_base"]
            verdict = "ok" if ratio <= TARGETS[step] else "MISS"
            print(f"{step + ' (boto3 ' + ('upload' if step == 'push' else 'download') + '_file)':<28}"
                  f"{med[step]:>11.2f}s{med[step + '_base']:>11.2f}s{ratio:>7.2f}x{TARGETS[step]:>7.1f}x  {verdict}")
        n = args.small
        print(f"{f'{n} small files, objects/s':<28}{n / med['small']:>12.0f}{n / med['small_base']:>12.0f}"
              f"{med['small'] / med['small_base']:>7.2f}x")
    finally:
        moto.terminate()
        moto.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
