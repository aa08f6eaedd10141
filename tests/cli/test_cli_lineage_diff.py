"""Lineage trees, tensor evidence for declared parents, and tensor diffs with independently computed numbers."""

import json
from pathlib import Path

import numpy as np
import pytest
from modelfactory import bf16_bits, finetune, tiny_tensors, write_bf16_file, write_model

BIG = {"layers": 2, "hidden": 64, "vocab": 256}


def test_diff_of_a_finetune_reports_exactly_the_changed_tensors(arc, tmp_path: Path) -> None:
    base = tiny_tensors(**BIG)
    changed = ["model.layers.0.mlp.weight", "model.layers.1.attn.weight"]
    ft = finetune(base, changed, scale=1e-3)
    arc("push", write_model(tmp_path / "a", base), "acme/base:v1")
    arc("push", write_model(tmp_path / "b", ft), "acme/ft:v1")
    d = arc.json("diff", "acme/base:v1", "acme/ft:v1")
    assert sorted(c["name"] for c in d["changed"]) == sorted(changed)
    assert d["identical"] == len(base) - 2
    assert d["added"] == d["removed"] == d["shape_changed"] == []
    for c in d["changed"]:
        a = base[c["name"]].astype(np.float64)
        b = ft[c["name"]].astype(np.float64)
        assert c["relative_l2"] == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-9)
        assert c["max_abs_diff"] == pytest.approx(np.abs(b - a).max(), rel=1e-9)
    assert d["files_changed"] == ["model.safetensors"] and d["files_identical"] == 2
    text = arc("diff", "acme/base:v1", "acme/ft:v1").stdout
    assert "2 changed" in text and changed[0] in text


def test_diff_counts_values_that_became_nan_or_inf_instead_of_calling_them_unchanged(arc, tmp_path: Path) -> None:
    """A fine-tune that diverged: values that became NaN or an infinity are counted, and that tensor is listed
    first (the table shows the first rows only), where the difference of NaN taken as 0 reported max |diff| 0 and
    sorted it last. NaN on both sides is no change; the L2 and max figures cover the finite differences."""
    base = tiny_tensors(**BIG)
    name, louder = "model.layers.0.mlp.weight", "model.layers.1.attn.weight"
    base[name] = base[name].copy()
    base[name].flat[7] = np.nan  # NaN in both: unchanged
    ft = dict(base)
    ft[name] = base[name].copy()
    ft[name].flat[:3] = [np.nan, np.inf, -np.inf]
    ft[name].flat[10] += 0.25
    ft[louder] = base[louder] * 3  # changed far more, in finite values only
    arc("push", write_model(tmp_path / "a", base), "acme/base:v1")
    arc("push", write_model(tmp_path / "b", ft), "acme/ft:v1")
    first, second = arc.json("diff", "acme/base:v1", "acme/ft:v1")["changed"]
    assert (first["name"], first["nonfinite"], second["name"], second["nonfinite"]) == (name, 3, louder, 0)
    a, b = base[name].astype(np.float64).ravel(), ft[name].astype(np.float64).ravel()
    finite = np.isfinite(a) & np.isfinite(b)
    expected = np.linalg.norm((b - a)[finite]) / np.linalg.norm(a[np.isfinite(a)])
    assert first["relative_l2"] == pytest.approx(expected, rel=1e-9)
    assert first["relative_l2"] < second["relative_l2"]
    assert first["max_abs_diff"] == pytest.approx(0.25, rel=1e-6)
    text = arc("diff", "acme/base:v1", "acme/ft:v1").stdout
    assert "(+3 NaN/inf)" in text and "(1 with values that became or stopped being NaN or infinite)" in text, text
    assert text.index(name) < text.index(louder)


def test_diff_sees_added_removed_reshaped_tensors_and_changed_files(arc, tmp_path: Path) -> None:
    base = tiny_tensors()
    other = dict(base)
    del other["lm_head.bias"]
    other["extra.weight"] = np.ones(4, dtype=np.float32)
    other["model.layers.0.norm.weight"] = np.ones(32, dtype=np.float32)
    arc("push", write_model(tmp_path / "a", base), "acme/m:a")
    arc("push", write_model(tmp_path / "b", other, config={"model_type": "llama", "hidden_size": 32}), "acme/m:b")
    d = arc.json("diff", "acme/m:a", "acme/m:b")
    assert d["added"] == ["extra.weight"] and d["removed"] == ["lm_head.bias"]
    assert [s["name"] for s in d["shape_changed"]] == ["model.layers.0.norm.weight"]
    assert "config.json" in d["files_changed"]


def test_diff_decodes_bf16(arc, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal(4096) * 0.02
    bumped = values.copy()
    bumped[:10] += 0.5
    for name, v in (("a", values), ("b", bumped)):
        (tmp_path / name).mkdir()
        write_bf16_file(tmp_path / name / "model.safetensors", {"w": bf16_bits(v)})
        arc("push", tmp_path / name, f"acme/bf:{name}")
    d = arc.json("diff", "acme/bf:a", "acme/bf:b")
    [c] = d["changed"]
    a = (bf16_bits(values).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    b = (bf16_bits(bumped).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    assert c["max_abs_diff"] == pytest.approx(np.abs(b - a).max(), rel=1e-12)
    assert c["relative_l2"] == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-9)


def _family(arc, tmp_path: Path) -> dict:
    base = tiny_tensors(**BIG)
    arc("push", write_model(tmp_path / "g0", base), "acme/base:v1")
    child = finetune(base, ["model.layers.0.mlp.weight"], seed=1)
    arc("push", write_model(tmp_path / "g1", child), "acme/chat:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    grandchild = finetune(child, ["model.layers.1.mlp.weight"], seed=2)
    arc("push", write_model(tmp_path / "g2", grandchild), "acme/chat-q:v1", "--parent", "acme/chat:v1", "--relation", "quantized")
    other = finetune(base, ["model.layers.1.attn.weight"], seed=3)
    arc("push", write_model(tmp_path / "o", other), "acme/code:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    merged = finetune(grandchild, ["lm_head.bias"], seed=4)
    arc("push", write_model(tmp_path / "m", merged), "acme/merged:v1", "--parent", "acme/chat-q:v1",
        "--parent", "acme/code:v1", "--relation", "merge")
    return base


def test_lineage_tree_three_generations_and_a_merge(arc, tmp_path: Path) -> None:
    _family(arc, tmp_path)
    tree = arc.json("lineage", "acme/merged:v1")
    parents = {(n["model"], n["relation"]) for n in tree["ancestors"]}
    assert parents == {("acme/chat-q", "merge"), ("acme/code", "merge")}
    chat_q = next(n for n in tree["ancestors"] if n["model"] == "acme/chat-q")
    assert chat_q["children"][0]["model"] == "acme/chat"
    assert chat_q["children"][0]["children"][0]["model"] == "acme/base"
    down = arc.json("lineage", "acme/base:v1")["descendants"]
    assert {n["model"] for n in down} == {"acme/chat", "acme/code"}
    text = arc("lineage", "acme/merged:v1").stdout
    assert "acme/base" in text and "merge" in text and "quantized" in text


def test_lineage_check_flags_a_parent_without_evidence(arc, tmp_path: Path) -> None:
    base = tiny_tensors(**BIG)
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    stranger = tiny_tensors(seed=99, **BIG)
    arc("push", write_model(tmp_path / "stranger", stranger), "acme/stranger:v1")
    # make every tensor differ, so only the values can tell a real fine-tune from a stranger
    ft = finetune(base, list(base), scale=1e-4)
    arc("push", write_model(tmp_path / "ft", ft), "acme/ft:v1", "--parent", "acme/base:v1", "--parent",
        "acme/stranger:v1", "--relation", "finetune")
    report = {r["parent_model"]: r for r in arc.json("lineage", "acme/ft:v1", "--check")}
    assert report["acme/base"]["no_evidence"] is False
    assert report["acme/base"]["max_relative_l2"] < 0.1
    assert report["acme/stranger"]["no_evidence"] is True
    assert report["acme/stranger"]["median_relative_l2"] > 1.0
    assert "WARNING: declared parent acme/stranger shows no tensor evidence" in arc("lineage", "acme/ft:v1", "--check").stdout


def test_lineage_and_diff_refuse_unknown_refs(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    assert "no model" in arc.fail("lineage", "acme/none:v1").stderr
    assert "no tag" in arc.fail("diff", "acme/m:v1", "acme/m:v9").stderr
    assert "invalid REF" in arc.fail("diff", "bad", "acme/m:v1").stderr
    json.loads(arc("lineage", "acme/m:v1", "--json").stdout)


def test_lineage_check_says_related_not_which_came_first(arc, tmp_path: Path) -> None:
    """A base declared as the child of its own fine-tune: the tensors are symmetric, so they show the two are
    related, and the report says that is all they show."""
    base = tiny_tensors(**BIG)
    arc("push", write_model(tmp_path / "ft", finetune(base, list(base), scale=1e-4)), "acme/ft:v1")
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1", "--parent", "acme/ft:v1", "--relation", "finetune")
    (report,) = arc.json("lineage", "acme/base:v1", "--check")
    assert report["verdict"] == "related" and report["direction_shown"] is False
    assert report["supported_fraction"] > 0.95
    text = arc("lineage", "acme/base:v1", "--check").stdout
    assert "show the two are related" in text and "cannot show which came first" in text
    assert "support this parent" not in text


def test_lineage_check_weighs_one_shared_tensor_as_partial_evidence(arc, tmp_path: Path) -> None:
    """An unrelated model that copied one 64x64 tensor (10% of the compared parameters) is not supported."""
    base = tiny_tensors(**BIG)
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    stranger = tiny_tensors(seed=99, **BIG)
    stranger["model.layers.0.attn.weight"] = base["model.layers.0.attn.weight"]
    arc("push", write_model(tmp_path / "s", stranger), "acme/s:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    (report,) = arc.json("lineage", "acme/s:v1", "--check")
    informative = [k for k, v in base.items() if v.dtype.kind == "f" and np.ptp(v) > 0]
    share = base["model.layers.0.attn.weight"].size / sum(base[k].size for k in informative)
    assert report["verdict"] == "partial" and report["no_evidence"] is False
    assert report["supported_fraction"] == pytest.approx(share)
    assert report["median_relative_l2"] > 1.0
    text = arc("lineage", "acme/s:v1", "--check").stdout
    assert f"partial evidence for acme/base: only {share:.1%} of the" in text
    assert "related" not in text and "support this parent" not in text


def test_lineage_check_of_a_child_of_a_withdrawn_parent_says_so(arc, tmp_path: Path) -> None:
    """Its weights freed by gc, the parent has nothing to compare: said, not reported as a damaged store."""
    base = tiny_tensors(**BIG)
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    ft = finetune(base, ["model.layers.0.mlp.weight"], seed=1)
    arc("push", write_model(tmp_path / "ft", ft), "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune", "--no-delta")
    arc("rm", "acme/base:v1", "--reason", "leaked eval data")
    arc("gc")
    (report,) = arc.json("lineage", "acme/ft:v1", "--check")
    assert report["verdict"] == "parent_withdrawn" and report["parent_withdrawn_reason"] == "leaked eval data"
    text = arc("lineage", "acme/ft:v1", "--check").stdout
    assert "the parent was withdrawn (leaked eval data) and its weights are gone" in text
    assert "nothing to compare" in text


def test_lineage_queries_end_on_a_cycle_an_older_modelarc_recorded(arc, tmp_path: Path, monkeypatch) -> None:
    """a -> b -> a, as an older modelarc could record it: the walks end, and a is not its own descendant."""
    from modelarc.archive.repository import Archive
    from modelarc.registry import queries as q
    from modelarc.registry.models import Lineage
    from modelarc.registry.refs import parse_ref

    arc("push", write_model(tmp_path / "a", tiny_tensors(seed=1)), "evil/a:v1")
    arc("push", write_model(tmp_path / "b", tiny_tensors(seed=2)), "evil/b:v1")
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    with Archive.open(arc.home) as archive, archive.catalog.session() as s:
        a = q.resolve_snapshot(s, parse_ref("evil/a:v1")).row_id
        b = q.resolve_snapshot(s, parse_ref("evil/b:v1")).row_id
        s.add_all([Lineage(child_id=a, parent_id=b, relation="finetune"), Lineage(child_id=b, parent_id=a, relation="finetune")])
    assert [r["model"] for r in arc.json("ls", "--descendant-of", "evil/a:v1")] == ["evil/b"]
    assert [r["model"] for r in arc.json("ls", "--descendant-of", "evil/b:v1")] == ["evil/a"]
    tree = arc.json("lineage", "evil/a:v1")
    assert [n["model"] for n in tree["descendants"]] == ["evil/b"]
    assert [n["model"] for n in tree["ancestors"]] == ["evil/b"]


def test_lineage_check_median_of_an_even_count_is_the_mean_of_the_middle_two(arc, tmp_path: Path) -> None:
    """Two changed tensors: the median is halfway between their relative L2s (it was the larger one)."""
    base = tiny_tensors(**BIG)
    ft = finetune(finetune(base, ["model.layers.0.mlp.weight"], scale=1e-3), ["model.layers.1.attn.weight"], scale=4e-3)
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    arc("push", write_model(tmp_path / "ft", ft), "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    low, high = sorted(c["relative_l2"] for c in arc.json("diff", "acme/base:v1", "acme/ft:v1")["changed"])
    assert high > 2 * low
    (report,) = arc.json("lineage", "acme/ft:v1", "--check")
    assert report["median_relative_l2"] == pytest.approx((low + high) / 2, rel=1e-12)
    assert report["max_relative_l2"] == pytest.approx(high, rel=1e-12)


@pytest.mark.parametrize("second", ["acme/base:v1", "acme/base:v2"])
def test_a_parent_named_twice_is_one_line_before_anything_is_archived(arc, tmp_path: Path, second: str) -> None:
    """The same snapshot as two --parent options (one ref twice, or two tags of it) was a 104-line traceback from
    the lineage table's unique constraint, after the objects were written."""
    arc("push", write_model(tmp_path / "base"), "acme/base:v1")
    arc("tag", "acme/base:v1", "v2")
    ft = write_model(tmp_path / "ft", finetune(tiny_tensors(), ["model.layers.0.mlp.weight"]))
    result = arc.fail("push", ft, "acme/ft:v1", "--parent", "acme/base:v1", "--parent", second, "--relation", "merge")
    assert result.exit_code == 2 and "is named twice" in result.stderr
    assert [r["model"] for r in arc.json("ls")] == ["acme/base"]
