"""Exports of a snapshot's provenance: a CycloneDX 1.6 ML-BOM and a Hugging Face model card.

The BOM is built with cyclonedx-python-lib (components, hashes, licenses, pedigree, properties, data components).
That library (11.x) has no model for ``modelCard``, so the model card object is added to the serialised JSON by
hand, following the 1.6 schema; the result is checked with the library's strict 1.6 validator before it is
returned, so an export that does not validate is an error, never a file.

Hashes: the main component carries the SHA-256 of every weight and config file as sub-components of type ``file``,
and the snapshot id (the sha256 of the manifest) as a property and as the component version.
"""

from __future__ import annotations

import json
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType, Pedigree
from cyclonedx.model.license import LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from modelarc import __version__
from modelarc.archive.repository import Archive
from modelarc.errors import ModelarcError

HF_RELATIONS = {"finetune": "finetune", "quantized": "quantized", "merge": "merge", "adapter": "adapter"}


def _license(text: str | None) -> list[LicenseExpression]:
    return [LicenseExpression(text)] if text else []


def export_cyclonedx(archive: Archive, ref_text: str) -> str:
    view = archive.show(ref_text)
    main_ref = f"model:{view.model}@{view.snapshot}"
    files = [
        Component(
            type=ComponentType.FILE,
            name=f["path"],
            bom_ref=f"file:{view.snapshot}:{f['path']}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=f["sha256"])],
            properties=[Property(name="modelarc:size_bytes", value=str(f["size"]))],
        )
        for f in view.files
    ]
    ancestors = [
        Component(
            type=ComponentType.MACHINE_LEARNING_MODEL,
            name=p["model"],
            version=p["snapshot"],
            bom_ref=f"model:{p['model']}@{p['snapshot']}",
            properties=[Property(name="modelarc:relation", value=p["relation"])],
        )
        for p in view.parents
    ]
    datasets = [
        Component(
            type=ComponentType.DATA,
            name=d["name"],
            version=d["version"],
            bom_ref=f"data:{d['content_hash']}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=d["content_hash"])],
            licenses=_license(d["license"]),
            properties=[
                Property(name=f"modelarc:{k}", value=str(v))
                for k, v in (
                    ("role", d["role"]),
                    ("source", d["source"]),
                    ("size_bytes", d["size_bytes"]),
                    ("tokens", d["tokens"]),
                    ("records", d["records"]),
                    ("time_start", d["time_range"]["start"]),
                    ("time_end", d["time_range"]["end"]),
                )
                if v is not None
            ],
        )
        for d in view.datasets
    ]
    props = {
        "modelarc:snapshot": view.snapshot,
        "modelarc:parameter_count": str(view.parameter_count),
        "modelarc:training_cutoff": view.cutoff,
        "modelarc:release_date": view.release_date,
        "modelarc:withdrawn": view.withdrawn["reason"] if view.withdrawn else None,
        **{f"modelarc:dtype:{k}": str(v) for k, v in view.dtypes.items()},
    }
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=view.model,
        version=view.snapshot,
        bom_ref=main_ref,
        description=view.description,
        licenses=_license(view.license),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=view.snapshot.removeprefix("sha256:"))],
        properties=[Property(name=k, value=v) for k, v in props.items() if v],
        pedigree=Pedigree(ancestors=ancestors) if ancestors else None,
        components=files,
    )
    bom = Bom(components=datasets)
    bom.metadata.component = model
    bom.register_dependency(model, datasets)  # the model depends on the data it was trained on
    doc = json.loads(JsonV1Dot6(bom).output_as_string())
    doc["metadata"]["component"]["modelCard"] = _model_card(view.architecture, datasets)
    text = json.dumps(doc, indent=2, sort_keys=False)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise ModelarcError(f"the ML-BOM for {ref_text} does not validate against CycloneDX 1.6: {error}")
    return text


def _model_card(arch: dict[str, Any], datasets: list[Component]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if arch.get("model_type"):
        params["architectureFamily"] = arch["model_type"]
    if arch.get("architectures"):
        params["modelArchitecture"] = ", ".join(arch["architectures"])
    if datasets:
        params["datasets"] = [{"ref": str(d.bom_ref.value)} for d in datasets]
    card: dict[str, Any] = {"modelParameters": params}
    details = [
        (k, arch[k]) for k in ("num_layers", "hidden_size", "vocab_size", "context_length") if k in arch
    ]
    if details:
        card["properties"] = [{"name": f"modelarc:{k}", "value": str(v)} for k, v in details]
    return card


def export_model_card(archive: Archive, ref_text: str) -> str:
    """A Hugging Face README.md with YAML metadata (base_model, base_model_relation, datasets, license)."""
    from huggingface_hub import ModelCard, ModelCardData

    view = archive.show(ref_text)
    data: dict[str, Any] = {"license": view.license or None, "tags": ["modelarc"]}
    if view.parents:
        data["base_model"] = [p["model"] for p in view.parents]
        relations = {HF_RELATIONS.get(p["relation"]) for p in view.parents}
        if len(relations) == 1 and None not in relations:
            data["base_model_relation"] = relations.pop()
    if view.datasets:
        data["datasets"] = sorted({d["name"] for d in view.datasets})
    card_data = ModelCardData(**{k: v for k, v in data.items() if v})
    arch = view.architecture
    lines = [
        f"# {view.model}",
        "",
        f"Archived by modelarc {__version__} as snapshot `{view.snapshot}`.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {arch.get('model_type', '-')} ({', '.join(arch.get('architectures', [])) or '-'}) |",
        f"| parameters | {view.parameter_count:,} ({', '.join(f'{k} {v:,}' for k, v in view.dtypes.items())}) |",
        f"| training cutoff | {view.cutoff or 'unknown'} |",
        f"| release date | {view.release_date or 'unknown'} |",
        f"| license | {view.license or 'unknown'} |",
    ]
    if view.withdrawn:
        lines += ["", f"**Withdrawn** on {view.withdrawn['at']}: {view.withdrawn['reason']}"]
    if view.parents:
        lines += ["", "## Lineage", ""] + [
            f"- {p['relation']} of `{p['model']}` (`{p['snapshot']}`)" for p in view.parents
        ]
    if view.datasets:
        lines += ["", "## Training data", ""] + [
            f"- {d['role']}: {d['name']} {d['version'] or ''} (sha256 `{d['content_hash']}`)"
            for d in view.datasets
        ]
    lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| {f['path']} | {f['size']} | `{f['sha256']}` |" for f in view.files]
    card = ModelCard.from_template(
        card_data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines) + "\n"
    )
    return str(card)
