"""load_model from the archive vs transformers' from_pretrained from the original folder (same dtype, warm cache).

    python bench/load.py [--repeat 5]

Uses a generated Llama-shaped model (hidden 512, 8 layers, vocab 32000; ~60M parameters) saved with
save_pretrained, pushed once, then timed both ways in the same run; target: archive <= 1.3x from_pretrained.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.loading import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        vocab_size=32000,
        max_position_embeddings=2048,
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
        archive, _ = Archive.init(Path(tmp) / "home")
        with archive:
            archive.push(folder, "bench/llama:v1")
            ids = torch.tensor([[1, 2, 3, 4]])
            a = load_model(archive, "bench/llama:v1", device="cpu")
            b = transformers.AutoModelForCausalLM.from_pretrained(folder)
            with torch.no_grad():
                assert torch.equal(a(ids).logits, b(ids).logits), "archive and folder disagree"
            t_arc, t_hf = [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                load_model(archive, "bench/llama:v1", device="cpu")
                t_arc.append(time.perf_counter() - t)
                t = time.perf_counter()
                transformers.AutoModelForCausalLM.from_pretrained(folder)
                t_hf.append(time.perf_counter() - t)
    arc_s, hf_s = statistics.median(t_arc), statistics.median(t_hf)
    size = sum(p.stat().st_size for p in folder.parent.rglob("*.safetensors")) if folder.exists() else 0
    ratio = arc_s / hf_s
    print(
        f"model: Llama-shaped, {sum(x.numel() for x in b.parameters()) / 1e6:.1f}M parameters, float32 {size or ''}"
    )
    print(f"load_model (archive)      {arc_s:.3f} s")
    print(f"from_pretrained (folder)  {hf_s:.3f} s")
    print(f"ratio {ratio:.2f}x  target <= 1.30x  {'PASS' if ratio <= 1.3 else 'MISS'}")


if __name__ == "__main__":
    main()
