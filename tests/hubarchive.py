"""An archive to browse with Hugging Face tools: models in two namespaces with licenses, cutoffs, lineage, a
training-data manifest, a tag with history, an explicit ``main`` tag, a withdrawn snapshot and a many-file model.

``build(base)`` pushes everything into ``Archive.init(base / "home")`` (the catalog named by
MODELARC_DATABASE_URL) and returns the archive and the facts tests check against.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from modelfactory import TINY_CONFIG, finetune, tiny_tensors, write_model

from modelarc.archive.provenance.data import attach_data, parse_data_manifest
from modelarc.archive.provenance.withdrawal import withdraw
from modelarc.archive.repository import Archive
from modelarc.registry.records import Provenance

GPT2_CONFIG = {**TINY_CONFIG, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}
MANY_FILES = 120  # over two pages of an expanded tree listing (50 entries a page)


@dataclass(frozen=True)
class Browsable:
    archive: Archive
    folders: dict[str, Path]  # what each snapshot was pushed from, by a short name
    snapshots: dict[str, str]  # snapshot ids by the same names
    created: tuple[str, ...]  # models in the order they were first pushed


def build(base: Path) -> Browsable:
    archive, _ = Archive.init(base / "home")
    folders: dict[str, Path] = {}
    snapshots: dict[str, str] = {}

    def push(key: str, ref: str, folder: Path, provenance: Provenance | None = None) -> None:
        folders[key] = folder
        snapshots[key] = archive.push(folder, ref, provenance).snapshot

    def model(key: str, **kw: object) -> Path:
        return write_model(base / key, **kw)  # type: ignore[arg-type]

    # acme/base: v1, then `latest` moved onto it by `modelarc tag`, then two pushes to latest. The second push
    # changes the weights and sub/deep/y.txt; the third changes only tokenizer.json.
    sub = {"sub/x.txt": b"hello", "sub/deep/y.txt": b"y1"}
    push(
        "base1",
        "acme/base:v1",
        model("base1", extra_files=sub),
        Provenance(
            license="MIT",
            cutoff=dt.date(2023, 5, 1),
            cutoff_precision="month",
            description="first release\nwith notes",
        ),
    )
    archive.tag(f"acme/base@{snapshots['base1']}", "latest")
    base2 = model("base2", tensors=tiny_tensors(seed=2), extra_files={**sub, "sub/deep/y.txt": b"y2"})
    push(
        "base2",
        "acme/base:latest",
        base2,
        Provenance(license="MIT", cutoff=dt.date(2023, 5, 1), cutoff_precision="month"),
    )
    base3 = model("base3", tensors=tiny_tensors(seed=2), extra_files={**sub, "sub/deep/y.txt": b"y2"})
    (base3 / "tokenizer.json").write_text(json.dumps({"version": "1.0", "vocab": {"a": 0, "b": 1, "c": 2}}))
    push(
        "base3",
        "acme/base:latest",
        base3,
        Provenance(license="MIT", cutoff=dt.date(2023, 5, 1), cutoff_precision="month"),
    )
    # acme/tuned: a finetune of acme/base v1, trained on the-pile
    push(
        "tuned",
        "acme/tuned:latest",
        model("tuned", tensors=finetune(tiny_tensors(), ["model.layers.0.mlp.weight"])),
        Provenance(
            license="apache-2.0",
            cutoff=dt.date(2022, 1, 1),
            cutoff_precision="year",
            parents=((f"acme/base@{snapshots['base1']}", "finetune"),),
        ),
    )
    data = b"version: 1\ndatasets:\n  - {name: the-pile, version: '1.0', role: pretrain}\n"
    attach_data(archive, "acme/tuned:latest", parse_data_manifest(data, "data.yaml"))
    # other/gpt: another namespace, architecture and license; a cutoff to the day
    push(
        "gpt",
        "other/gpt:latest",
        model("gpt", tensors=tiny_tensors(seed=5), config=GPT2_CONFIG),
        Provenance(license="mit", cutoff=dt.date(2021, 3, 15), cutoff_precision="day"),
    )
    # acme/mainline: a `main` tag that is not `latest`
    push("mainline-latest", "acme/mainline:latest", model("ml1", tensors=tiny_tensors(seed=6)))
    push("mainline-main", "acme/mainline:main", model("ml2", tensors=tiny_tensors(seed=7)))
    # acme/gone: withdrawn
    push("gone", "acme/gone:latest", model("gone", tensors=tiny_tensors(seed=8)))
    withdraw(archive, "acme/gone:latest", reason="license revoked")
    # acme/many: a folder of many small files
    shards = {f"shards/part-{i:03d}.txt": f"part {i}\n".encode() for i in range(MANY_FILES)}
    push("many", "acme/many:latest", model("many", tensors=tiny_tensors(seed=9), extra_files=shards))
    # other/gpt again, last: its head is now the newest snapshot, though the model is not the newest
    gpt_again = Provenance(license="mit", cutoff=dt.date(2021, 3, 15), cutoff_precision="day")
    push(
        "gpt2",
        "other/gpt:latest",
        model("gpt2", tensors=tiny_tensors(seed=10), config=GPT2_CONFIG),
        gpt_again,
    )
    created = ("acme/base", "acme/tuned", "other/gpt", "acme/mainline", "acme/gone", "acme/many")
    return Browsable(archive, folders, snapshots, created)
