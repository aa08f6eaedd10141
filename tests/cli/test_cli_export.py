"""Exports: a CycloneDX 1.6 ML-BOM the strict validator accepts, and a Hugging Face model card."""

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from modelfactory import finetune, tiny_tensors, write_model

PILE = "cd" * 32
DATA = f"""version: 1
datasets:
  - name: the-pile
    version: "1.0"
    sha256: "{PILE}"
    license: mit
    role: pretrain
    source: https://pile.eleuther.ai
    size_bytes: 825000000000
    tokens: 300000000000
    time_range: {{start: "2019-01", end: "2020-12-31"}}
  - name: house-chats
    license: internal use only
    role: instruction
    source: "shared drive, folder chats/2023"
    records: 1200
    notes: "collected in-house"
"""


def _bom_validator() -> JsonStrictValidator:
    return JsonStrictValidator(SchemaVersion.V1_6)


def _family(arc, tmp_path: Path) -> Path:
    base = tiny_tensors()
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1", "--license", "apache-2.0")
    (tmp_path / "data.yaml").write_text(DATA)
    src = write_model(tmp_path / "ft", finetune(base, ["lm_head.bias"]))
    arc(
        "push", src, "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune", "--cutoff", "2023-04",
        "--license", "apache-2.0", "--data", tmp_path / "data.yaml",
    )  # fmt: skip
    return src


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_strict_validator_rejects_broken_boms(arc, tmp_path: Path) -> None:
    """The check the other tests rely on can fail: the same validator rejects what the schema forbids."""
    _family(arc, tmp_path)
    text = arc("export", "acme/ft:v1", "--format", "cyclonedx").stdout
    assert _bom_validator().validate_str(text) is None
    for breakage in (
        lambda d: d["metadata"]["component"].update(type="not-a-type"),
        lambda d: d["metadata"]["component"]["hashes"][0].update(content="not-hex"),
        lambda d: d["metadata"]["component"]["modelCard"].update(unknownField=1),
        lambda d: d["components"][0]["data"][0].update(type="spreadsheet"),
    ):
        doc = json.loads(text)
        breakage(doc)
        assert _bom_validator().validate_str(json.dumps(doc)) is not None


def test_cyclonedx_ml_bom_carries_model_hashes_lineage_and_properties(arc, tmp_path: Path) -> None:
    src = _family(arc, tmp_path)
    base_id = arc.json("show", "acme/base:v1")["snapshot"]
    ft_id = arc.json("show", "acme/ft:v1")["snapshot"]
    text = arc("export", "acme/ft:v1", "--format", "cyclonedx").stdout
    assert _bom_validator().validate_str(text) is None
    doc = json.loads(text)
    assert doc["specVersion"] == "1.6"
    model = doc["metadata"]["component"]
    assert (model["type"], model["name"], model["version"]) == ("machine-learning-model", "acme/ft", ft_id)
    assert model["hashes"] == [{"alg": "SHA-256", "content": ft_id.removeprefix("sha256:")}]
    assert model["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    [parent] = model["pedigree"]["ancestors"]
    assert (parent["name"], parent["version"], parent["type"]) == (
        "acme/base",
        base_id,
        "machine-learning-model",
    )
    assert {"name": "modelarc:relation", "value": "finetune"} in parent["properties"]
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["modelarc:training_cutoff"] == "2023-04"
    assert props["modelarc:training_cutoff_precision"] == "month"
    n_params = sum(t.size for t in tiny_tensors().values())
    assert int(props["modelarc:parameter_count"]) == n_params
    assert sum(int(v) for k, v in props.items() if k.startswith("modelarc:dtype:")) == n_params
    assert props["modelarc:snapshot"] == ft_id
    assert "modelarc:version" in props
    files = {c["name"]: c["hashes"][0]["content"] for c in model["components"]}
    for path in src.iterdir():
        assert files[path.name] == hashlib.sha256(path.read_bytes()).hexdigest()
    card = model["modelCard"]["modelParameters"]
    assert (card["architectureFamily"], card["modelArchitecture"]) == ("llama", "LlamaForCausalLM")
    assert {t["name"] for t in doc["metadata"]["tools"]["components"]} >= {"modelarc", "cyclonedx-python-lib"}


def test_cyclonedx_datasets_are_data_components_with_only_declared_hashes(arc, tmp_path: Path) -> None:
    _family(arc, tmp_path)
    doc = json.loads(arc("export", "acme/ft:v1", "--format", "cyclonedx").stdout)
    data = {c["name"]: c for c in doc["components"] if c["type"] == "data"}
    assert set(data) == {"the-pile", "house-chats"}
    pile, chats = data["the-pile"], data["house-chats"]
    assert pile["hashes"] == [{"alg": "SHA-256", "content": PILE}]
    assert pile["licenses"] == [{"license": {"id": "MIT"}}]
    assert pile["externalReferences"] == [{"type": "distribution", "url": "https://pile.eleuther.ai"}]
    assert pile["data"] == [
        {"type": "dataset", "name": "the-pile", "contents": {"url": "https://pile.eleuther.ai"}}
    ]
    pile_props = {p["name"]: p["value"] for p in pile["properties"]}
    assert pile_props["modelarc:size_bytes"] == "825000000000"
    # each bound at the precision the manifest gave (ISO 8601 reduced precision): 2019-01 is all of January
    assert [pile_props[f"modelarc:time_{b}"] for b in ("start", "start_precision", "end", "end_precision")] == [
        "2019-01",
        "month",
        "2020-12-31",
        "day",
    ]
    # no sha256 in the manifest: the catalog keys the row by a hash of its description, which is not a data hash
    assert "hashes" not in chats
    chat_props = {p["name"]: p["value"] for p in chats["properties"]}
    assert chat_props["modelarc:source"] == "shared drive, folder chats/2023"  # not a URL: a property
    assert chats["licenses"] == [{"license": {"name": "internal use only"}}]
    refs = [d["ref"] for d in doc["metadata"]["component"]["modelCard"]["modelParameters"]["datasets"]]
    assert sorted(refs) == sorted(c["bom-ref"] for c in data.values())
    [model_deps] = [d for d in doc["dependencies"] if d["ref"] == doc["metadata"]["component"]["bom-ref"]]
    assert sorted(model_deps["dependsOn"]) == sorted(refs)


def test_model_card_has_hub_metadata_and_loads_with_huggingface_hub(arc, tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    src = _family(arc, tmp_path)
    ft_id = arc.json("show", "acme/ft:v1")["snapshot"]
    out = tmp_path / "README.md"
    arc("export", "acme/ft:v1", "--format", "model-card", "-o", out)
    text = out.read_text()
    meta = _front_matter(text)
    assert meta["base_model"] == "acme/base"
    assert meta["base_model_relation"] == "finetune"
    assert meta["datasets"] == ["the-pile", "house-chats"]
    assert meta["license"] == "apache-2.0"
    assert "modelarc" in meta["tags"]
    assert meta["modelarc"]["snapshot"] == ft_id
    card = ModelCard.load(out)
    assert card.data.base_model == "acme/base" and card.data.license == "apache-2.0"
    assert ft_id in card.text and "2023-04 (month precision)" in card.text
    sha = hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()
    assert f"| model.safetensors | {(src / 'model.safetensors').stat().st_size} | `{sha}` |" in card.text


def test_model_card_omits_relations_the_hub_cannot_express(arc, tmp_path: Path) -> None:
    base = tiny_tensors()
    arc("push", write_model(tmp_path / "a", base), "acme/a:v1")
    arc("push", write_model(tmp_path / "b", tiny_tensors(seed=1)), "acme/b:v1")
    arc("push", write_model(tmp_path / "s", finetune(base, ["lm_head.bias"])), "acme/small:v1",
        "--parent", "acme/a:v1", "--relation", "distilled")  # fmt: skip
    arc("push", write_model(tmp_path / "m", tiny_tensors(seed=2)), "acme/merged:v1",
        "--parent", "acme/a:v1", "--parent", "acme/b:v1", "--relation", "merge")  # fmt: skip
    small = arc("export", "acme/small:v1", "--format", "model-card").stdout
    meta = _front_matter(small)
    assert meta["base_model"] == "acme/a" and "base_model_relation" not in meta
    assert "base_model_relation is omitted" in small and "distilled" in small
    merged = _front_matter(arc("export", "acme/merged:v1", "--format", "model-card").stdout)
    assert merged["base_model"] == ["acme/a", "acme/b"] and merged["base_model_relation"] == "merge"
    bom = arc("export", "acme/merged:v1", "--format", "cyclonedx").stdout
    assert _bom_validator().validate_str(bom) is None
    assert len(json.loads(bom)["metadata"]["component"]["pedigree"]["ancestors"]) == 2


def test_withdrawn_snapshot_still_exports_its_provenance(arc, tmp_path: Path) -> None:
    _family(arc, tmp_path)
    arc("rm", "acme/ft:v1", "--reason", "license revoked")
    text = arc("export", "acme/ft:v1", "--format", "cyclonedx").stdout
    assert _bom_validator().validate_str(text) is None
    model = json.loads(text)["metadata"]["component"]
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["modelarc:withdrawn_reason"] == "license revoked"
    assert model["pedigree"]["ancestors"][0]["name"] == "acme/base"
    assert "**Withdrawn**" in arc("export", "acme/ft:v1", "--format", "model-card").stdout


def test_export_output_file_is_not_overwritten_without_force(arc, tmp_path: Path) -> None:
    _family(arc, tmp_path)
    out = tmp_path / "bom.json"
    out.write_text("keep me")
    assert "already exists" in arc.fail("export", "acme/ft:v1", "--format", "cyclonedx", "-o", out).stderr
    assert out.read_text() == "keep me"
    arc("export", "acme/ft:v1", "--format", "cyclonedx", "-o", out, "--force")
    assert _bom_validator().validate_str(out.read_text()) is None
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    summary = arc.json("export", "acme/ft:v1", "--format", "cyclonedx", "-o", out, "--force")
    assert summary["path"] == str(out) and summary["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    piped = arc.json("export", "acme/ft:v1", "--format", "cyclonedx")
    assert piped["document"]["metadata"]["component"]["name"] == "acme/ft"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("acme/none:v1", "--format", "cyclonedx"), "no model acme/none"),
        (("acme/m:v9", "--format", "model-card"), "v9"),
        (("not a ref", "--format", "cyclonedx"), "invalid REF"),
        (("acme/m:v1", "--format", "pdf"), "unknown export format 'pdf'"),
    ],
)
def test_export_errors_are_one_clear_line(arc, tmp_path: Path, catalog_snapshot, args, message) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    before = catalog_snapshot()
    result = arc.fail("export", *args)
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert catalog_snapshot() == before


def test_export_to_a_directory_is_refused(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    err = arc.fail("export", "acme/m:v1", "--format", "cyclonedx", "-o", tmp_path, "--force").stderr
    assert "is a folder" in err
