"""Snapshot signatures: Sigstore bundles in the format OpenSSF model_signing 1.x writes in "key" mode.

A bundle made here can be checked with model_signing alone, against the restored folder::

    model_signing.verifying.Config().use_elliptic_key_verifier(public_key="key.pub").verify(folder, "folder/model.sig")

and a bundle made by ``model_signing.signing.Config().use_elliptic_key_signer(...)`` verifies here. The layout,
which must not change without a new modelarc predicate version (bundles outlive the code that wrote them)::

    bundle (compact JSON)
      mediaType            application/vnd.dev.sigstore.bundle.v0.3+json
      verificationMaterial {publicKey: {hint: <key fingerprint>}, tlogEntries: []}
      dsseEnvelope         {payload: base64(statement), payloadType: application/vnd.in-toto+json,
                            signatures: [{sig: base64(DER ECDSA over DSSE PAE(payloadType, statement)), keyid: ""}]}
    statement (in-toto Statement v1, JSON indented by 2 as model_signing's protobuf printer does)
      subject   [{name: <model name>, digest: {sha256: sha256(concatenated raw digests of resources, in order)}}]
      predicateType  https://model_signing/signature/v1.0
      predicate
        serialization  {method: files, hash_type: sha256, allow_symlinks: false, ignore_paths: [...]}
        resources      [{name: <posix path>, algorithm: sha256, digest: <hex>}, ...] sorted as model_signing sorts
        modelarc       {version: 1, snapshot: "sha256:<hex>"}   (extra field; model_signing v1.0 ignores it)

model_signing hashes every regular file under the folder except the paths it ignores: ``.git``, ``.gitattributes``,
``.github`` and ``.gitignore`` at the top level (always, by default, on both sides), plus the bundle's own
``ignore_paths``. A symlink or any extra file (a lock, a temp file, a metadata folder) makes its verifier fail. So
a bundle lists ``model.sig`` in ``ignore_paths`` by default, so that it can sit at the folder's top level, and the
files model_signing would ignore are left out of ``resources``; the snapshot id still covers them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from cryptography.hazmat.primitives.asymmetric import ec

from modelarc.archive.signing import dsse
from modelarc.archive.signing.fields import expect, field, optional_field, parse_json
from modelarc.archive.signing.keys import key_fingerprint, load_public_key_pem, public_key_pem
from modelarc.errors import InvalidRefError, SignatureError
from modelarc.registry.refs import SnapshotId

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
DSSE_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
MODELARC_PREDICATE_VERSION = 1

# model_signing's CLI writes the signature here by default; restoring it at the folder top level keeps
# `model_signing verify key <folder> --signature <folder>/model.sig` and the Python API happy.
DEFAULT_SIGNATURE_NAME = "model.sig"
# What model_signing's hashing.Config ignores unless told `ignore_git_paths=False`, as it writes them in a bundle.
GIT_IGNORE_PATHS: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")

_HEX64 = re.compile(r"[0-9a-f]{64}")  # fullmatch: match and a final "$" let "<64 hex>\n" in
# arrays and objects in a bundle's own JSON (its statement is base64 inside it): ours has 7, a keyless Sigstore bundle
# with its certificate chain and transparency-log entries a few dozen
MAX_BUNDLE_CONTAINERS = 1024


@dataclass(frozen=True)
class FileDigest:
    """One file of a model folder: its posix path relative to the folder and the sha256 hex of its bytes."""

    path: str
    sha256: str

    def __post_init__(self) -> None:
        # A bad value here is a bug in the caller (manifests are validated when read), hence ValueError.
        problem = _path_problem(self.path)
        if problem:
            raise ValueError(f"FileDigest path {self.path!r} {problem}")
        if not _HEX64.fullmatch(self.sha256):
            raise ValueError(
                f"FileDigest sha256 for {self.path!r} is not 64 lowercase hex digits: {self.sha256!r}"
            )


@dataclass(frozen=True)
class VerifiedSignature:
    """What a bundle vouches for, once its signature has been checked against a trusted key.

    ``files`` maps posix path -> sha256 hex for every file the signer hashed; files under ``ignore_paths`` (and
    model_signing's git paths) were not hashed, so compare only the paths for which ``ignores`` is false.
    """

    files: dict[str, str]
    snapshot_id: SnapshotId | None
    key_fingerprint: str
    model_name: str = ""
    ignore_paths: tuple[str, ...] = GIT_IGNORE_PATHS

    def ignores(self, path: str) -> bool:
        """Whether model_signing's verifier skips ``path`` (posix, relative) for this bundle."""
        return _is_ignored(path, (*GIT_IGNORE_PATHS, *self.ignore_paths))


def sign_snapshot(
    files: Sequence[FileDigest],
    snapshot_id: SnapshotId | str,
    private_key: ec.EllipticCurvePrivateKey,
    *,
    model_name: str | None = None,
    ignore_paths: Sequence[str] = (DEFAULT_SIGNATURE_NAME,),
) -> bytes:
    """A model_signing key-mode bundle over ``files``, also carrying ``snapshot_id``.

    ``model_name`` is the subject name (model_signing uses the folder's name; it is informative only and defaults
    to the snapshot id). ``ignore_paths`` (posix, relative to the folder) are written to the bundle so that
    model_signing's verifier skips them; put the signature file's own path here if it lives inside the folder.
    Files under an ignored path, or under model_signing's git paths, are left out of the signed list.

    Example::

        bundle = sign_snapshot([FileDigest("config.json", "ab12...")], "sha256:...", load_private_key(path))
        (folder / DEFAULT_SIGNATURE_NAME).write_bytes(bundle)
    """
    snapshot_id = SnapshotId(snapshot_id)  # InvalidRefError unless sha256:<64 hex>
    ignored = _normalised_ignore_paths(ignore_paths)
    everything_ignored = (*GIT_IGNORE_PATHS, *ignored)

    by_path: dict[str, str] = {}
    for item in files:
        if item.path in by_path:
            raise ValueError(f"file listed twice: {item.path!r}")
        by_path[item.path] = item.sha256
    # model_signing sorts resources by PurePosixPath, which compares path components, not strings:
    # "a/b" sorts before "a-b" although "-" < "/".
    signed = sorted(
        (p for p in by_path if not _is_ignored(p, everything_ignored)), key=lambda p: p.split("/")
    )

    root = hashlib.sha256()
    resources = []
    for path in signed:
        root.update(bytes.fromhex(by_path[path]))
        resources.append({"name": path, "algorithm": "sha256", "digest": by_path[path]})

    # Key order and layout follow model_signing's Payload and its protobuf JSON printer (indent 2, non-ASCII kept);
    # model_signing's own key order inside the predicate varies between runs, ours is fixed.
    serialization = {
        "method": "files",
        "hash_type": "sha256",
        "allow_symlinks": False,
        "ignore_paths": sorted(set(everything_ignored)),
    }
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name or snapshot_id, "digest": {"sha256": root.hexdigest()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": serialization,
            "resources": resources,
            "modelarc": {"version": MODELARC_PREDICATE_VERSION, "snapshot": snapshot_id},
        },
    }
    payload = json.dumps(statement, indent=2, ensure_ascii=False).encode("utf-8")
    signature = dsse.sign(DSSE_PAYLOAD_TYPE, payload, private_key, deterministic=True)

    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": key_fingerprint(public_key_pem(private_key))},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": DSSE_PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify_bundle(bundle: bytes, trusted_public_pems: Sequence[bytes]) -> VerifiedSignature:
    """Check ``bundle``'s signature against the trusted keys and return what it signs.

    The key is picked by the bundle's hint (model_signing's key fingerprint); a bundle without a hint (written
    by model_signing before 1.0) is tried against every trusted key. This checks the signature only: comparing
    ``files`` with the bytes on disk, or ``snapshot_id`` with the snapshot, is the caller's job.

    Raises ``SignatureError`` for anything wrong with the bundle, ``SigningKeyError`` if a trusted key is not a
    usable PEM public key.
    """
    trusted = {key_fingerprint(pem): load_public_key_pem(pem) for pem in trusted_public_pems}
    if not trusted:
        raise SignatureError("no trusted public keys to verify the signature with")

    # a bundle is a few JSON objects around base64 strings, which hold no brackets: one with more arrays and objects
    # than any Sigstore bundle is refused before it is parsed (64 MiB of "[]" would take gigabytes to parse)
    expect(
        bundle.count(b"[") + bundle.count(b"{") <= MAX_BUNDLE_CONTAINERS,
        "bundle holds more JSON arrays and objects than a Sigstore bundle does",
    )
    doc = parse_json(bundle, "bundle")
    expect(
        field(doc, "mediaType", str, "bundle") == BUNDLE_MEDIA_TYPE,
        f"bundle mediaType is not {BUNDLE_MEDIA_TYPE}",
    )
    material = field(doc, "verificationMaterial", dict, "bundle")
    hint: str | None = None
    if "publicKey" in material:
        public_key_id = field(material, "publicKey", dict, "verificationMaterial")
        hint = optional_field(public_key_id, "hint", str, "verificationMaterial.publicKey") or None

    envelope = dsse.read_envelope(field(doc, "dsseEnvelope", dict, "bundle"), "dsseEnvelope")
    expect(
        envelope.payload_type == DSSE_PAYLOAD_TYPE,
        f"dsseEnvelope payloadType is {envelope.payload_type!r}, not {DSSE_PAYLOAD_TYPE}",
    )
    # model_signing checks only the first signature; accepting more would accept bundles it rejects.
    expect(
        len(envelope.signatures) == 1,
        f"dsseEnvelope has {len(envelope.signatures)} signatures, expected exactly 1",
    )
    payload, (_keyid, signature) = envelope.payload, envelope.signatures[0]

    if hint is not None:
        expect(hint in trusted, f"bundle is signed by key {hint}, which is not a trusted key")
        candidates = {hint: trusted[hint]}
    else:
        candidates = trusted
    fingerprint = next(
        (
            fp
            for fp, key in candidates.items()
            if dsse.signature_valid(key, signature, envelope.payload_type, payload)
        ),
        None,
    )
    if fingerprint is None:
        which = f"key {hint}" if hint else "any trusted key"
        raise SignatureError(
            f"bundle signature does not verify with {which}: the bundle was altered or forged"
        )
    return _read_statement(payload, fingerprint)


def _read_statement(payload: bytes, fingerprint: str) -> VerifiedSignature:
    statement = parse_json(payload, "signed statement")
    expect(
        field(statement, "_type", str, "statement") == STATEMENT_TYPE,
        f"statement _type is not {STATEMENT_TYPE}",
    )
    predicate_type = field(statement, "predicateType", str, "statement")
    expect(
        predicate_type == PREDICATE_TYPE,
        f"statement predicateType is {predicate_type!r}; only {PREDICATE_TYPE} is supported",
    )
    subjects = field(statement, "subject", list, "statement")
    expect(len(subjects) == 1 and isinstance(subjects[0], dict), "statement must have exactly one subject")
    model_name = field(subjects[0], "name", str, "subject")
    root_digest = field(
        field(subjects[0], "digest", dict, "subject"), "sha256", str, "subject.digest"
    ).lower()

    predicate = field(statement, "predicate", dict, "statement")
    serialization = field(predicate, "serialization", dict, "predicate")
    method = field(serialization, "method", str, "serialization")
    hash_type = field(serialization, "hash_type", str, "serialization")
    expect(
        method == "files" and hash_type == "sha256",
        f"signature uses serialization {method}/{hash_type}; only files/sha256 is supported",
    )
    raw_ignores = optional_field(serialization, "ignore_paths", list, "serialization") or []
    expect(all(isinstance(p, str) for p in raw_ignores), "serialization.ignore_paths holds a non-string")
    ignore_paths = tuple(str(PurePosixPath(p)) for p in raw_ignores)

    files: dict[str, str] = {}
    root = hashlib.sha256()
    for index, resource in enumerate(field(predicate, "resources", list, "predicate")):
        where = f"predicate.resources[{index}]"
        expect(isinstance(resource, dict), f"{where} is not an object")
        name = field(resource, "name", str, where)
        algorithm = field(resource, "algorithm", str, where)
        expect(algorithm == "sha256", f"{where} ({name}) uses {algorithm!r}, expected sha256")
        digest = field(resource, "digest", str, where).lower()
        expect(bool(_HEX64.fullmatch(digest)), f"{where} ({name}) digest is not 64 hex digits")
        # model_signing reads names as PurePosixPath, so "./a" and "a" are the same file to it.
        path = str(PurePosixPath(name))
        problem = _path_problem(path)
        expect(problem is None, f"{where} path {name!r} {problem}")
        expect(path not in files, f"{where} lists {path!r} twice")
        files[path] = digest
        root.update(bytes.fromhex(digest))
    expect(
        root.hexdigest() == root_digest,
        "statement subject digest does not match its resources (inconsistent manifest)",
    )

    snapshot_id: SnapshotId | None = None
    if "modelarc" in predicate:
        extension = field(predicate, "modelarc", dict, "predicate")
        version = extension.get("version")
        expect(
            type(version) is int and version == MODELARC_PREDICATE_VERSION,  # a JSON true or 1.0 is not 1
            f"predicate.modelarc version {version!r} is not supported (this modelarc reads {MODELARC_PREDICATE_VERSION})",
        )
        claimed = field(extension, "snapshot", str, "predicate.modelarc")
        try:
            snapshot_id = SnapshotId(claimed)
        except InvalidRefError:
            raise SignatureError(f"predicate.modelarc.snapshot is not a snapshot id: {claimed!r}") from None
    return VerifiedSignature(
        files=files,
        snapshot_id=snapshot_id,
        key_fingerprint=fingerprint,
        model_name=model_name,
        ignore_paths=ignore_paths,
    )


def _path_problem(path: str) -> str | None:
    """Why ``path`` is not a normalised relative posix path that stays inside the folder, or None."""
    if not path or path.startswith("/"):
        return "is empty or absolute"
    if str(PurePosixPath(path)) != path or any(part in (".", "..") for part in path.split("/")):
        return "is not a normalised relative path"
    if "\x00" in path or "\\" in path:
        return "contains a NUL or backslash"
    return None


def _normalised_ignore_paths(paths: Sequence[str]) -> tuple[str, ...]:
    normalised = []
    for raw in paths:
        problem = _path_problem(raw)
        if problem:
            raise ValueError(f"ignore path {raw!r} {problem}")
        normalised.append(raw)
    return tuple(normalised)


def _is_ignored(path: str, ignore_paths: Sequence[str]) -> bool:
    # model_signing: Path.is_relative_to(model_root / ignored), i.e. equal or below it, by whole components.
    return any(path == ignored or path.startswith(ignored + "/") for ignored in ignore_paths)
