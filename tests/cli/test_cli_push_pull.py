import filecmp
import json
from pathlib import Path

from modelfactory import finetune, odd_float_model, tiny_tensors, write_model


def _identical(a: Path, b: Path) -> None:
    for p in a.rglob("*"):
        if p.is_file():
            assert filecmp.cmp(p, b / p.relative_to(a), shallow=False), p


def test_push_pull_round_trip_is_byte_identical(arc, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m")
    pushed = arc.json("push", src, "acme/tiny:v1")
    assert pushed["snapshot"].startswith("sha256:") and len(pushed["snapshot"]) == 71
    assert pushed["logical_bytes"] == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert pushed["stored_bytes_added"] > 0
    arc("pull", "acme/tiny:v1", tmp_path / "out")
    _identical(src, tmp_path / "out")


def test_repush_adds_no_bytes_and_keeps_snapshot(arc, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m")
    first = arc.json("push", src, "acme/tiny:v1")
    second = arc.json("push", src, "acme/tiny:v1")
    assert second["stored_bytes_added"] == 0
    assert second["snapshot"] == first["snapshot"]
    assert len(arc.json("ls")) == 1


def test_finetune_push_stores_only_changed_tensors(arc, tmp_path: Path) -> None:
    base = tiny_tensors(layers=4, hidden=128, vocab=512)
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    changed = ["model.layers.0.mlp.weight", "model.layers.2.attn.weight"]
    ft = arc.json(
        "push",
        write_model(tmp_path / "ft", finetune(base, changed)),
        "acme/ft:v1",
        "--parent",
        "acme/base:v1",
        "--relation",
        "finetune",
    )
    changed_bytes = sum(base[n].nbytes for n in changed)
    assert 0.5 * changed_bytes <= ft["stored_bytes_added"] <= changed_bytes + 8192
    shown = arc.json("show", "acme/ft:v1")
    assert shown["parents"][0]["relation"] == "finetune"
    assert shown["parents"][0]["model"] == "acme/base"


def test_pull_by_digest_prefix(arc, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m")
    snap = arc.json("push", src, "acme/tiny:v1")["snapshot"]
    arc("pull", f"acme/tiny@{snap[:15]}", tmp_path / "out")
    _identical(src, tmp_path / "out")


def test_show_reports_architecture_parameters_and_provenance(arc, tmp_path: Path) -> None:
    tensors = tiny_tensors()
    arc(
        "push",
        write_model(tmp_path / "m", tensors),
        "acme/tiny:v1",
        "--cutoff",
        "2023-04",
        "--license",
        "mit",
        "--description",
        "a tiny test model",
        "--source",
        "https://example.org/tiny",
    )
    shown = arc.json("show", "acme/tiny:v1")
    assert shown["architecture"] == {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "num_layers": 2,
        "hidden_size": 64,
        "vocab_size": 128,
        "context_length": 256,
    }
    assert shown["parameter_count"] == sum(t.size for t in tensors.values())
    assert shown["dtypes"]["I64"] == 16
    assert shown["cutoff"] == "2023-04"
    assert shown["license"] == "mit"
    assert shown["source_url"] == "https://example.org/tiny"
    assert shown["signatures"] and shown["signatures"][0]["trusted"] == "yes"
    text = arc("show", "acme/tiny:v1").stdout
    assert "llama" in text and "2023-04" in text and "mit" in text


def test_tag_moves_are_kept_in_log(arc, tmp_path: Path) -> None:
    one = arc.json("push", write_model(tmp_path / "a", tiny_tensors(seed=1)), "acme/m:latest")["snapshot"]
    two = arc.json("push", write_model(tmp_path / "b", tiny_tensors(seed=2)), "acme/m:latest")["snapshot"]
    arc("tag", f"acme/m@{one}", "stable")
    history = arc.json("log", "acme/m")
    moves = [(m["tag"], m["from"], m["to"]) for m in history["tag_moves"]]
    assert ("latest", one, two) in moves
    assert ("stable", None, one) in moves
    assert {s["snapshot"] for s in history["snapshots"]} == {one, two}


def test_stats_report_dedup_and_compression(arc, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m")
    arc("push", src, "acme/a:v1")
    arc("push", src, "acme/b:v1")
    st = arc.json("stats")
    assert st["snapshots"] == 2
    # the second push stores only its own manifest and signature (a few KB), no file bytes
    assert st["unique_bytes"] < 0.5 * st["logical_bytes"] + 16384
    assert st["dedup_ratio"] > 1.8
    assert st["stored_bytes"] <= st["unique_bytes"] + 64 * st["objects"]


def test_pull_refuses_existing_files_without_force(arc, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m")
    arc("push", src, "acme/tiny:v1")
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("keep me")
    result = arc.fail("pull", "acme/tiny:v1", out)
    assert "already exists" in result.stderr
    assert (out / "config.json").read_text() == "keep me"
    arc("pull", "acme/tiny:v1", out, "--force")
    _identical(src, out)


def test_pull_writes_model_signing_bundle(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    sig = tmp_path / "out" / "model.sig"
    arc("pull", "acme/tiny:v1", tmp_path / "out", "--signature", sig)
    bundle = json.loads(sig.read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"


def test_every_command_speaks_json(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    for args in (
        ["ls"],
        ["show", "acme/tiny:v1"],
        ["log", "acme/tiny"],
        ["stats"],
        ["verify", "acme/tiny:v1"],
        ["verify", "--all"],
        ["fsck"],
        ["gc", "--dry-run"],
        ["keys", "list"],
        ["tag", "acme/tiny:v1", "x"],
        ["init"],
    ):
        json.loads(arc(*args, "--json").stdout)


def test_odd_length_float_tensors_round_trip_through_push_pull_verify_and_load(
    arc, tmp_path: Path, monkeypatch
) -> None:
    import torch

    from modelarc.archive.repository import Archive
    from modelarc.archive.runtime.loading import load_state_dict
    from modelarc.storage import ObjectId

    src, tensors = odd_float_model(tmp_path / "odd")
    arc("push", src, "acme/odd:v1")
    arc("verify", "acme/odd:v1")
    arc("pull", "acme/odd:v1", tmp_path / "out")
    _identical(src, tmp_path / "out")
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    with Archive.open(arc.home) as archive:
        loaded = load_state_dict(archive, "acme/odd:v1", device="cpu")
        assert loaded.keys() == tensors.keys()
        for name, tensor in tensors.items():
            assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape, name
            assert torch.equal(loaded[name], tensor), name
        # the float-aware codec really carried the odd tensors (the tiniest ones are stored raw)
        _ref, snap = archive.resolve("acme/odd:v1")
        codecs = {
            part.name: {archive.store.stat(ObjectId(c.id)).codec for c in part.chunks}
            for f in archive.manifest(snap).files
            for part in f.parts
            if part.kind == "tensor"
        }
    for name in ("odd.bf16.rows", "odd.bf16.past_a_chunk", "odd.f32.rows", "odd.f16.rows"):
        assert "floatplanes" in codecs[name], (name, codecs[name])
    assert len(codecs["odd.bf16.past_a_chunk"]) == 2  # 8 MiB of planes, then a 10-byte raw tail chunk


def test_repush_takes_unchanged_files_from_the_push_index_and_says_so(arc, tmp_path: Path, monkeypatch) -> None:
    from modelarc.archive import push_index

    monkeypatch.setattr(push_index, "SETTLE_SECONDS", 0.0)  # the files were just written (the rule: 2 s)
    src = write_model(tmp_path / "m")
    first = arc.json("push", src, "acme/tiny:v1")
    files = first["files"]
    again = arc("push", src, "acme/tiny:v1", "--no-progress").stdout
    assert f"{files} of {files} files unchanged since an earlier push, not read again" in again
    forced = arc.json("push", src, "acme/tiny:v1", "--rehash")
    assert forced["unchanged_files"] == 0 and forced["snapshot"] == first["snapshot"]
    assert arc.json("push", src, "acme/tiny:v1")["unchanged_files"] == files


def test_push_help_and_relation_error_list_every_relation(arc, tmp_path: Path) -> None:
    """continued-pretrain was accepted but missing from `push --help` and from the --relation error."""
    from modelarc.registry.records import RELATIONS

    helped = arc("push", "--help").stdout
    assert f"--relation {'|'.join(RELATIONS)}" in helped  # in one piece: not wrapped at a hyphen
    err = arc.fail("push", write_model(tmp_path / "m"), "acme/x:v1", "--parent", "acme/base:v1").stderr
    assert f"--parent needs --relation ({', '.join(RELATIONS)})" in err and "continued-pretrain" in err
