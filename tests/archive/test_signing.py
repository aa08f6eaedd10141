"""Signing interoperates with the real OpenSSF model_signing 1.x key mode, both ways, on real files."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import model_signing
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from modelarc.archive.signing import keys
from modelarc.archive.signing.bundles import DEFAULT_SIGNATURE_NAME, FileDigest, sign_snapshot, verify_bundle
from modelarc.archive.signing.keys import (
    generate_private_key,
    key_fingerprint,
    load_private_key,
    load_public_key_pem,
    public_key_pem,
    write_private_key,
)
from modelarc.errors import SignatureError, SigningKeyError

SNAPSHOT = "sha256:" + "ab" * 32


def write_model(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    save_file(
        {
            "embed.weight": rng.standard_normal((16, 8)).astype(np.float32),
            "norm.weight": np.ones(8, np.float32),
        },
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    # "a/b" and "a-b" sort differently as strings and as paths; model_signing sorts as paths.
    (folder / "a").mkdir()
    (folder / "a" / "b").write_bytes(b"nested")
    (folder / "a-b").write_bytes(b"dash")
    return folder


def folder_digests(folder: Path) -> list[FileDigest]:
    return [
        FileDigest(path.relative_to(folder).as_posix(), hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]


def payload_of(bundle: bytes) -> dict:
    return json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))


def model_signing_verify(folder: Path, signature: Path, public_key: Path) -> None:
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(
        folder, signature
    )


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "tiny-llama")


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[Path, Path]:
    key = generate_private_key()
    private = tmp_path / "keys" / "signing.pem"
    private.parent.mkdir()
    write_private_key(key, private)
    public = tmp_path / "keys" / "signing.pub"
    public.write_bytes(public_key_pem(key))
    return private, public


# (1) Our bundles pass model_signing's own verifier.


def test_model_signing_verifies_our_bundle_stored_inside_the_folder(
    model: Path, key_files: tuple[Path, Path]
) -> None:
    private, public = key_files
    bundle = sign_snapshot(folder_digests(model), SNAPSHOT, load_private_key(private), model_name=model.name)
    (model / DEFAULT_SIGNATURE_NAME).write_bytes(bundle)

    model_signing_verify(model, model / DEFAULT_SIGNATURE_NAME, public)


def test_our_statement_signs_the_same_manifest_as_model_signing(
    model: Path, key_files: tuple[Path, Path], tmp_path: Path
) -> None:
    private, _ = key_files
    theirs_path = tmp_path / "theirs.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private).sign(model, theirs_path)
    ours = payload_of(
        sign_snapshot(folder_digests(model), SNAPSHOT, load_private_key(private), model_name=model.name)
    )
    theirs = payload_of(theirs_path.read_bytes())

    assert ours["subject"] == theirs["subject"]
    assert ours["predicate"]["resources"] == theirs["predicate"]["resources"]  # same order too
    assert json.loads(theirs_path.read_bytes())["verificationMaterial"]["publicKey"][
        "hint"
    ] == key_fingerprint(public_key_pem(load_private_key(private)))


def test_signing_is_deterministic(model: Path) -> None:
    key = generate_private_key()
    files = folder_digests(model)
    assert sign_snapshot(files, SNAPSHOT, key) == sign_snapshot(list(reversed(files)), SNAPSHOT, key)


def test_git_files_are_left_out_so_model_signing_still_verifies(
    model: Path, key_files: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = key_files
    (model / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    bundle = sign_snapshot(folder_digests(model), SNAPSHOT, load_private_key(private))
    signature = tmp_path / "outside.sig"
    signature.write_bytes(bundle)

    model_signing_verify(model, signature, public)
    verified = verify_bundle(bundle, [public.read_bytes()])
    assert ".gitattributes" not in verified.files
    assert verified.ignores(".gitattributes") and not verified.ignores("config.json")


# (2) model_signing's bundles pass ours.


def test_verify_bundle_accepts_a_model_signing_bundle(
    model: Path, key_files: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = key_files
    signature = tmp_path / "model.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private).sign(model, signature)

    verified = verify_bundle(signature.read_bytes(), [public.read_bytes()])

    assert verified.files == {d.path: d.sha256 for d in folder_digests(model)}
    assert verified.snapshot_id is None
    assert verified.key_fingerprint == key_fingerprint(public.read_bytes())
    assert verified.model_name == model.name


def test_verify_bundle_round_trips_our_bundle(model: Path) -> None:
    key = generate_private_key()
    files = folder_digests(model)

    verified = verify_bundle(sign_snapshot(files, SNAPSHOT, key), [public_key_pem(key)])

    assert verified.files == {d.path: d.sha256 for d in files}
    assert verified.snapshot_id == SNAPSHOT


# (3) A changed folder fails model_signing's verifier.


def test_model_signing_rejects_our_bundle_when_a_file_was_tampered(
    model: Path, key_files: tuple[Path, Path]
) -> None:
    private, public = key_files
    (model / DEFAULT_SIGNATURE_NAME).write_bytes(
        sign_snapshot(folder_digests(model), SNAPSHOT, load_private_key(private))
    )
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))

    with pytest.raises(ValueError, match=r"Hash mismatch for .{0,4}model\.safetensors"):
        model_signing_verify(model, model / DEFAULT_SIGNATURE_NAME, public)


def test_model_signing_rejects_our_bundle_when_a_file_was_added(
    model: Path, key_files: tuple[Path, Path]
) -> None:
    private, public = key_files
    (model / DEFAULT_SIGNATURE_NAME).write_bytes(
        sign_snapshot(folder_digests(model), SNAPSHOT, load_private_key(private))
    )
    (model / "extra.py").write_text("print('hi')\n")

    with pytest.raises(ValueError, match="Extra files"):
        model_signing_verify(model, model / DEFAULT_SIGNATURE_NAME, public)


# (4) A changed bundle fails ours.


def _mutate(bundle: bytes, change) -> bytes:
    doc = json.loads(bundle)
    change(doc)
    return json.dumps(doc).encode()


def _flip_payload_byte(doc: dict) -> None:
    payload = bytearray(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    at = payload.index(b'"digest": "') + len(b'"digest": "')  # a file's digest: still valid JSON and hex
    payload[at] = ord("0") if payload[at] != ord("0") else ord("1")
    doc["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()


def _change_signature(doc: dict) -> None:
    sig = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-1] ^= 0x01
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_flip_payload_byte, "does not verify"),
        (_change_signature, "does not verify"),
        (
            lambda doc: doc["verificationMaterial"]["publicKey"].pop("hint"),
            "does not verify with any trusted key",
        ),
        (lambda doc: doc["dsseEnvelope"].update(payloadType="text/plain"), "payloadType"),
        (lambda doc: doc["dsseEnvelope"]["signatures"].append({"sig": "", "keyid": ""}), "exactly 1"),
    ],
    ids=[
        "payload-byte-flipped",
        "signature-changed",
        "hint-removed-and-payload-kept",
        "payload-type",
        "two-signatures",
    ],
)
def test_verify_bundle_rejects_a_tampered_bundle(model: Path, change, message: str) -> None:
    key = generate_private_key()
    bundle = sign_snapshot(folder_digests(model), SNAPSHOT, key)
    verify_bundle(bundle, [public_key_pem(key)])  # the untouched bundle is fine

    tampered = _mutate(bundle, change)
    if message.endswith("any trusted key"):  # no hint: fine with the right key, refused with another
        verify_bundle(tampered, [public_key_pem(key)])
        with pytest.raises(SignatureError, match=message):
            verify_bundle(tampered, [public_key_pem(generate_private_key())])
    else:
        with pytest.raises(SignatureError, match=message):
            verify_bundle(tampered, [public_key_pem(key)])


def test_verify_bundle_rejects_a_bundle_signed_by_an_untrusted_key(model: Path) -> None:
    signer, trusted = generate_private_key(), generate_private_key()
    bundle = sign_snapshot(folder_digests(model), SNAPSHOT, signer)

    with pytest.raises(SignatureError, match="not a trusted key"):
        verify_bundle(bundle, [public_key_pem(trusted)])


def test_verify_bundle_rejects_a_hint_pointing_at_a_trusted_key_that_did_not_sign(model: Path) -> None:
    signer, trusted = generate_private_key(), generate_private_key()
    bundle = sign_snapshot(folder_digests(model), SNAPSHOT, signer)
    forged = _mutate(
        bundle,
        lambda doc: doc["verificationMaterial"]["publicKey"].update(
            hint=key_fingerprint(public_key_pem(trusted))
        ),
    )

    with pytest.raises(SignatureError, match="does not verify"):
        verify_bundle(forged, [public_key_pem(trusted)])


def test_verify_bundle_rejects_a_resource_list_inconsistent_with_its_subject() -> None:
    # Signed correctly, but the subject digest does not cover the resources: model_signing refuses it too.
    key = generate_private_key()
    bundle = sign_snapshot([FileDigest("config.json", "0" * 64)], SNAPSHOT, key)
    doc = json.loads(bundle)
    statement = payload_of(bundle)
    statement["subject"][0]["digest"]["sha256"] = "f" * 64
    payload = json.dumps(statement).encode()
    pae = b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(payload), payload)
    doc["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(
        key.sign(pae, keys.ecdsa_algorithm(key))
    ).decode()

    with pytest.raises(SignatureError, match="subject digest does not match"):
        verify_bundle(json.dumps(doc).encode(), [public_key_pem(key)])


# (5) Keys on disk.


def test_private_key_file_is_0600_from_the_first_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes_while_writing: list[int] = []
    real_write = os.write

    def spying_write(fd: int, data: bytes) -> int:
        modes_while_writing.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(keys.os, "write", spying_write)
    old_umask = os.umask(0)  # a permissive umask must not leak the key
    try:
        write_private_key(generate_private_key(), tmp_path / "k.pem")
    finally:
        os.umask(old_umask)

    assert modes_while_writing == [0o600]
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"]  # no temporary file left behind


def test_private_key_round_trips_and_is_not_overwritten(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "k.pem"
    write_private_key(key, path)

    assert public_key_pem(load_private_key(path)) == public_key_pem(key)
    with pytest.raises(SigningKeyError, match="already exists"):
        write_private_key(generate_private_key(), path)
    assert public_key_pem(load_private_key(path)) == public_key_pem(key)


def test_fingerprint_is_sha256_of_the_public_pem_and_ignores_line_endings() -> None:
    pem = public_key_pem(generate_private_key())
    assert key_fingerprint(pem) == hashlib.sha256(pem).hexdigest()
    assert key_fingerprint(pem.replace(b"\n", b"\r\n")) == hashlib.sha256(pem).hexdigest()


@pytest.mark.parametrize(
    "garbage", [b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_garbage_public_key_gives_signing_key_error(garbage: bytes) -> None:
    with pytest.raises(SigningKeyError):
        load_public_key_pem(garbage)


def test_unreadable_private_key_gives_signing_key_error(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_private_key(tmp_path / "missing.pem")
    (tmp_path / "bad.pem").write_text("hello")
    with pytest.raises(SigningKeyError, match="not a PEM private key"):
        load_private_key(tmp_path / "bad.pem")


# (6) Garbage bundles.


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b"{}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"mediaType": 3}',
        b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}',
        b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": {}, '
        b'"dsseEnvelope": {"payload": "!!!", "payloadType": "application/vnd.in-toto+json", "signatures": []}}',
        b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": {}, '
        b'"dsseEnvelope": {"payload": "e30=", "payloadType": "application/vnd.in-toto+json", '
        b'"signatures": [{"sig": "AAAA"}]}}',
    ],
)
def test_garbage_bundle_gives_signature_error(garbage: bytes) -> None:
    with pytest.raises(SignatureError):
        verify_bundle(garbage, [public_key_pem(generate_private_key())])


_KEY = generate_private_key()
_BUNDLE = sign_snapshot(
    [FileDigest("config.json", "1" * 64), FileDigest("model.safetensors", "2" * 64)], SNAPSHOT, _KEY
)
_EXPECTED = verify_bundle(_BUNDLE, [public_key_pem(_KEY)])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.integers(0, len(_BUNDLE) - 1), value=st.integers(0, 255))
def test_any_changed_byte_gives_signature_error_or_the_same_result(at: int, value: int) -> None:
    mangled = bytearray(_BUNDLE)
    mangled[at] = value
    try:
        result = verify_bundle(bytes(mangled), [public_key_pem(_KEY)])
    except SignatureError:
        return
    assert result == _EXPECTED  # only bytes nothing reads (e.g. "keyid") may change harmlessly
