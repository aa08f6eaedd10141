"""Signing keys: ECDSA keys in PEM files, compatible with OpenSSF model_signing's "key" mode.

A key is identified by its fingerprint: the sha256 hex of its public key encoded as PEM SubjectPublicKeyInfo. This
is exactly what model_signing 1.x writes as ``verificationMaterial.publicKey.hint`` in a bundle (see
``model_signing/_signing/sign_ec_key.py``), so a fingerprint printed by modelarc can be compared by eye with a
bundle made by either tool. It must not change: bundles already written carry it.

Only the curves model_signing accepts are accepted here (P-256, P-384, P-521); new keys are P-256.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelarc.errors import SigningKeyError

# Curve name -> hash used for ECDSA with it; the same pairing model_signing uses (get_ec_key_hash).
_CURVE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def write_private_key(
    key: ec.EllipticCurvePrivateKey, path: str | os.PathLike[str], *, overwrite: bool = False
) -> None:
    """Write ``key`` to ``path`` as unencrypted PKCS#8 PEM, mode 0600, atomically.

    The bytes go to a temporary file in the same directory that is created with mode 0600 (so the key is never
    readable by others, not even for a moment), fsynced, then moved into place; a crash leaves either no key or the
    whole key. Without ``overwrite`` an existing file at ``path`` is an error rather than silently replaced: losing a
    signing key cannot be undone.
    """
    target = Path(path)
    pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(8)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise SigningKeyError(f"cannot create key file in {target.parent}: {exc.strerror}") from exc
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask can only remove bits; this also undoes e.g. a 0o277 umask
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)
        else:
            # link() fails if the target exists, unlike rename(): no window where an existing key is replaced.
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise SigningKeyError(f"key file already exists, not overwriting it: {target}") from None
            os.unlink(tmp)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise SigningKeyError(f"cannot write key file {target}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_private_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    """Read an unencrypted PEM private key written by ``write_private_key`` (or ``openssl ecparam -genkey``)."""
    target = Path(path)
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read key file {target}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # raised by cryptography when the key is encrypted
        raise SigningKeyError(f"key file {target} is encrypted; modelarc needs an unencrypted key") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"key file {target} is not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SigningKeyError(f"key file {target} holds a {type(key).__name__}, not an ECDSA key")
    _check_curve(key.curve, str(target))
    return key


def public_key_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The public half of ``key`` as PEM SubjectPublicKeyInfo: the bytes a fingerprint is taken over."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def load_public_key_pem(data: bytes) -> ec.EllipticCurvePublicKey:
    """Parse a PEM public key; ``SigningKeyError`` if it is not an ECDSA key on a supported curve."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError("not a PEM public key (expected '-----BEGIN PUBLIC KEY-----')") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SigningKeyError(f"public key is a {type(key).__name__}, not an ECDSA key")
    _check_curve(key.curve, "public key")
    return key


def key_fingerprint(public_pem: bytes) -> str:
    """sha256 hex of the key's PEM SubjectPublicKeyInfo, as model_signing writes it in a bundle's key hint.

    The PEM is parsed and re-encoded first, so the same key gives the same fingerprint whatever the line endings
    or surrounding text of the file it came from; for a PEM from ``public_key_pem`` this is simply its sha256.
    """
    return hashlib.sha256(public_key_pem(load_public_key_pem(public_pem))).hexdigest()


def ecdsa_algorithm(
    key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey, *, deterministic: bool = False
) -> ec.ECDSA:
    """ECDSA with the hash model_signing pairs with the key's curve (P-256/SHA-256, P-384/SHA-384, P-521/SHA-512).

    ``deterministic`` asks for RFC 6979 nonces (same key and message, same signature) where the installed
    ``cryptography`` supports them; verifiers cannot tell the difference.
    """
    _check_curve(key.curve, "key")
    hash_algorithm = _CURVE_HASHES[key.curve.name]()
    if deterministic:
        try:
            return ec.ECDSA(hash_algorithm, deterministic_signing=True)
        except (TypeError, UnsupportedAlgorithm):  # cryptography < 44, or an OpenSSL without RFC 6979
            pass
    return ec.ECDSA(hash_algorithm)


def _check_curve(curve: ec.EllipticCurve, what: str) -> None:
    if curve.name not in _CURVE_HASHES:
        raise SigningKeyError(f"{what} uses curve {curve.name}; supported are P-256, P-384 and P-521")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
