"""Exports: a CycloneDX 1.6 ML-BOM the strict validator accepts, and a Hugging Face model card."""

import hashlib
import json
from pathlib import Path

import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from modelfactory import finetune, tiny_tensors, write_model

DATA = 'version: 1\ndatasets:\n  - {name: the-pile, version: "1.0", sha256: "%s", license: mit, role: pretrain}\n' % ("cd" * 32)


def _family(arc, tmp_path: Path) -> Path:
    base = tiny_tensors()
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1", "--license", "apache-2.0")
    (tmp_path / "data.yaml").write_text(DATA)
    src = write_model(tmp_path / "ft", finetune(base, ["lm_head.bias"]))
    arc("push", src, "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune", "--cutoff", "2023-04",
        "--license", "apache-2.0", "--data", tmp_path / "data.yaml")
    return src


def test_cyclonedx_ml_bom_validates_strictly_and_carries_provenance(arc, tmp_path: Path) -> None:
    src = _family(arc, tmp_path)
    text = arc("export", "acme/ft:v1", "--format", "cyclonedx").stdout
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    assert validator.validate_str(text) is None
    doc = json.loads(text)
    broken = json.loads(text)
    broken["metadata"]["component"]["type"] = "not-a-type"
    assert validator.validate_str(json.dumps(broken)) is not None  # the same validator does reject bad documents
    model = doc["metadata"]["component"]
    assert model["type"] == "machine-learning-model" and model["name"] == "acme/ft"
    assert [a["name"] for a in model["pedigree"]["ancestors"]] == ["acme/base"]
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["modelarc:training_cutoff"] == "2023-04"
    assert int(props["modelarc:parameter_count"]) == sum(t.size for t in tiny_tensors().values())
    files = {c["name"]: c["hashes"][0]["content"] for c in model["components"]}
    assert files["model.safetensors"] == hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()
    [data] = [c for c in doc["components"] if c["type"] == "data"]
    assert data["name"] == "the-pile" and data["hashes"][0]["content"] == "cd" * 32
    assert model["modelCard"]["modelParameters"]["datasets"] == [{"ref": data["bom-ref"]}]
    assert model["modelCard"]["modelParameters"]["architectureFamily"] == "llama"


def test_model_card_has_hub_metadata(arc, tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    _family(arc, tmp_path)
    out = tmp_path / "README.md"
    arc("export", "acme/ft:v1", "--format", "model-card", "-o", out)
    text = out.read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["base_model"] == ["acme/base"]
    assert meta["base_model_relation"] == "finetune"
    assert meta["datasets"] == ["the-pile"]
    assert meta["license"] == "apache-2.0"
    card = ModelCard.load(out)
    assert card.data.base_model == ["acme/base"]
    assert "already exists" in arc.fail("export", "acme/ft:v1", "--format", "model-card", "-o", out).stderr
    arc("export", "acme/ft:v1", "--format", "model-card", "-o", out, "--force")


def test_export_errors(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    assert "no model" in arc.fail("export", "acme/none:v1", "--format", "cyclonedx").stderr
    assert arc("export", "acme/m:v1", "--format", "pdf", ok=False).exit_code != 0
