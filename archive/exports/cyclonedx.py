"""A snapshot as a CycloneDX 1.6 ML-BOM (JSON), validated by cyclonedx-python-lib's strict 1.6 validator.

Built with cyclonedx-python-lib: components, hashes, licenses, pedigree, properties, external references, tools,
dependencies. The library (11.x) has no model for a component's ``modelCard`` nor for the ``data`` of a data
component (both are commented-out TODOs in ``cyclonedx.model.component``), so those two objects are added to the
serialised JSON by hand, following the 1.6 schema. The whole document is then checked by the strict validator; an
export that does not validate is an error, never a file.

Shape of the document:

- ``metadata.component``: the model, type ``machine-learning-model``. Its version and its one hash are the snapshot id
  (the sha256 of the snapshot manifest, which names every file and tensor by hash, see docs/FORMAT.md). Each file of
  the snapshot (weights, config, tokenizer) is a sub-component of type ``file`` with its own SHA-256, so a consumer
  can check downloaded files one by one without our manifest format.
- ``pedigree.ancestors``: the declared parents (lineage table), each with its snapshot id as version and hash and the
  relation (finetune, merge, ...) as the property ``modelarc:relation``.
- ``components``: the datasets, type ``data``, with a SHA-256 only when the training-data manifest declared one.
- ``dependencies``: the model depends on its datasets.
- ``properties`` (``modelarc:*``): snapshot id, training cutoff and its precision, release date, parameter and tensor
  counts, parameters per dtype, withdrawal, and the modelarc version (also in ``metadata.tools``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.contrib.this.builders import this_component
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType, Pedigree
from cyclonedx.model.license import License
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from modelarc import __version__
from modelarc.archive.exports.subject import ExportSubject, load_subject
from modelarc.archive.repository import Archive
from modelarc.errors import ModelarcError
from modelarc.registry.datasets import AttachedDataset

_ARCH_DETAILS = ("num_layers", "hidden_size", "vocab_size", "context_length")


def export_cyclonedx(archive: Archive, ref_text: str) -> str:
    """The CycloneDX 1.6 ML-BOM of ``ref_text`` as JSON text.

    >>> text = export_cyclonedx(archive, "acme/llama:v1")  # doctest: +SKIP
    >>> json.loads(text)["metadata"]["component"]["type"]  # doctest: +SKIP
    'machine-learning-model'
    """
    subject = load_subject(archive, ref_text)
    datasets = _datasets(subject)
    model = _model(subject)
    bom = Bom(components=[c for c, _ in datasets])
    bom.metadata.component = model
    bom.metadata.tools.components.add(
        Component(
            type=ComponentType.APPLICATION, name="modelarc", version=__version__, bom_ref="tool:modelarc"
        )
    )
    bom.metadata.tools.components.add(this_component())
    bom.register_dependency(
        model, [c for c, _ in datasets]
    )  # the model depends on the data it was trained on
    doc = json.loads(JsonV1Dot6(bom).output_as_string())
    doc["metadata"]["component"]["modelCard"] = _model_card(subject, [c for c, _ in datasets])
    by_ref = {c["bom-ref"]: c for c in doc.get("components", [])}
    for component, data in datasets:
        by_ref[str(component.bom_ref.value)]["data"] = [data]
    text = json.dumps(doc, indent=2)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise ModelarcError(  # our bug, not the user's: say so loudly
            f"the ML-BOM for {ref_text} does not validate against CycloneDX 1.6: {error}"
        )
    return text + "\n"


def _sha256(hex_digest: str) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=hex_digest)


def _licenses(text: str | None) -> list[License]:
    """An SPDX id becomes ``license.id``, an SPDX expression ``expression``, anything else ``license.name``."""
    return [LicenseFactory().make_from_string(text)] if text else []


def _url(text: str | None) -> XsUri | None:
    """A URL we can put where the schema wants an IRI; free text (a path, a note) stays a property instead."""
    if not text or re.search(r"\s", text):
        return None
    parts = urlsplit(text)
    return XsUri(text) if parts.scheme and parts.netloc else None


def _props(pairs: dict[str, Any]) -> list[Property]:
    return [
        Property(name=f"modelarc:{k}", value=str(v)) for k, v in pairs.items() if v is not None and v != ""
    ]


def _model(subject: ExportSubject) -> Component:
    view = subject.view
    files = [
        Component(
            type=ComponentType.FILE,
            name=f.path,
            bom_ref=f"file:{view.snapshot}:{f.path}",
            hashes=[_sha256(f.sha256)],
            properties=_props({"size_bytes": f.size, "kind": f.kind}),
        )
        for f in view.files
    ]
    ancestors = [
        Component(
            type=ComponentType.MACHINE_LEARNING_MODEL,
            name=p.model,
            version=str(p.snapshot),
            bom_ref=f"model:{p.label}",
            hashes=[_sha256(p.snapshot.hex)],
            properties=_props({"relation": p.relation, "snapshot": p.snapshot}),
        )
        for p in view.parents
    ]
    props = {
        "snapshot": view.snapshot,
        "version": __version__,
        "parameter_count": view.parameter_count,
        "tensor_count": view.tensor_count,
        "logical_bytes": view.logical_bytes,
        "training_cutoff": view.cutoff,
        "training_cutoff_precision": subject.cutoff_precision,
        "release_date": view.release_date,
        # whose word the provenance is (the pusher, or the remote a pull took it from): no signature covers it
        "provenance_stated_by": view.stated_by.describe() if view.stated_by else None,
        "withdrawn_at": view.withdrawn.at if view.withdrawn else None,
        "withdrawn_reason": view.withdrawn.reason if view.withdrawn else None,
        **{f"dtype:{k}": v for k, v in sorted(view.dtypes.items())},
    }
    source = _url(view.source_url)
    if view.source_url and source is None:
        props["source"] = view.source_url
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=view.model,
        version=str(view.snapshot),
        bom_ref=f"model:{view.model}@{view.snapshot}",
        description=view.description,
        licenses=_licenses(view.license),
        hashes=[_sha256(view.snapshot.hex)],
        properties=_props(props),
        external_references=[ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=source)]
        if source
        else [],
        pedigree=Pedigree(
            ancestors=ancestors,
            notes="Declared parents from the modelarc lineage; property modelarc:relation says how it derives.",
        )
        if ancestors
        else None,
        components=files,
    )


def _datasets(subject: ExportSubject) -> list[tuple[Component, dict[str, Any]]]:
    """Each dataset once (a dataset used in two roles is one component), as a ``data`` component with the 1.6
    ``componentData`` object the library cannot model.

    A dataset is one recorded description (registry/dataset_identity.py): the snapshot's manifests may state one
    content hash under two descriptions (a later ``data attach`` correcting a licence), which are two components.
    Their bom-ref is ``data:<content hash>`` as before while the hash is described once, and gains the
    description's hash only when it is not, so bom-refs stay unique."""
    roles: dict[str, list[str]] = {}
    rows: dict[str, AttachedDataset] = {}
    for d in subject.view.datasets:
        rows.setdefault(d.description_hash, d)
        roles.setdefault(d.description_hash, [])
        if d.role not in roles[d.description_hash]:
            roles[d.description_hash].append(d.role)
    described = Counter(d.content_hash for d in rows.values())
    out = []
    for identity, d in rows.items():
        key = d.content_hash
        url = _url(d.source)
        declared = subject.dataset_hash(d)
        component = Component(
            type=ComponentType.DATA,
            name=d.name,
            version=d.version,
            bom_ref=f"data:{key}" if described[key] == 1 else f"data:{key}:{identity}",
            hashes=[_sha256(declared)] if declared else [],
            licenses=_licenses(d.license),
            description=d.notes,
            external_references=[ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=url)]
            if url
            else [],
            properties=_props(
                {
                    "role": ",".join(roles[identity]),
                    "dataset_key": key,
                    "source": d.source if url is None else None,
                    "size_bytes": d.size_bytes,
                    "records": d.records,
                    "tokens": d.tokens,
                    # at the precision the manifest gave (ISO 8601 reduced precision: "2020-06" is all of June),
                    # as training_cutoff is: no day is invented that the manifest did not state
                    "time_start": d.time_range.start,
                    "time_start_precision": d.time_range.start_precision,
                    "time_end": d.time_range.end,
                    "time_end_precision": d.time_range.end_precision,
                }
            ),
        )
        data: dict[str, Any] = {"type": "dataset", "name": d.name}
        if url is not None:
            data["contents"] = {"url": str(url)}
        if d.notes:
            data["description"] = d.notes
        out.append((component, data))
    return out


def _model_card(subject: ExportSubject, datasets: list[Component]) -> dict[str, Any]:
    """The 1.6 ``modelCard``: what the catalog knows (architecture, datasets, shape); nothing invented."""
    arch = subject.view.architecture
    params: dict[str, Any] = {}
    if arch.get("model_type"):
        params["architectureFamily"] = str(arch["model_type"])
    if arch.get("architectures"):
        params["modelArchitecture"] = ", ".join(map(str, arch["architectures"]))
    if datasets:
        params["datasets"] = [{"ref": str(d.bom_ref.value)} for d in datasets]
    card: dict[str, Any] = {"modelParameters": params}
    details = [(k, arch[k]) for k in _ARCH_DETAILS if arch.get(k) is not None]
    if details:
        card["properties"] = [{"name": f"modelarc:{k}", "value": str(v)} for k, v in details]
    if subject.view.withdrawn:
        card["considerations"] = {
            "technicalLimitations": [
                f"Withdrawn from the archive on {subject.view.withdrawn.at}: {subject.view.withdrawn.reason}"
            ]
        }
    return card
