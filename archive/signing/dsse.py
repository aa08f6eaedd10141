"""DSSE v1 envelopes (github.com/secure-systems-lab/dsse): the one implementation of signing and checking them.

Snapshot bundles (``bundles.py``, model_signing's layout) carry a DSSE envelope inside a Sigstore bundle; run
records (``archive/runtime/runs.py``) are stored as bare DSSE envelopes. Both sign the same thing, the
pre-authentication encoding of (payload type, payload), with the archive's ECDSA key, and both read an envelope
back through ``read_envelope``, which checks every field before anything is trusted.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from modelarc.archive.signing.fields import b64decode, expect, field
from modelarc.archive.signing.keys import ecdsa_algorithm


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, signature), in envelope order

    def to_json(self) -> dict[str, Any]:
        """The envelope as the DSSE specification lays it out (payloadType, payload, signatures)."""
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": k, "sig": base64.b64encode(s).decode("ascii")} for k, s in self.signatures
            ],
        }


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the ECDSA signature is actually computed over."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def sign(
    payload_type: str, payload: bytes, key: ec.EllipticCurvePrivateKey, *, deterministic: bool = False
) -> bytes:
    """A DER ECDSA signature over the PAE; ``deterministic`` (RFC 6979) makes re-signing reproducible."""
    return key.sign(pae(payload_type, payload), ecdsa_algorithm(key, deterministic=deterministic))


def signature_valid(
    key: ec.EllipticCurvePublicKey, signature: bytes, payload_type: str, payload: bytes
) -> bool:
    try:
        key.verify(signature, pae(payload_type, payload), ecdsa_algorithm(key))
    except InvalidSignature:
        return False
    return True


def read_envelope(obj: Mapping[str, Any], where: str) -> Envelope:
    """The envelope in ``obj`` with its payload and signatures decoded; SignatureError naming ``where`` if not."""
    payload_type = field(obj, "payloadType", str, where)
    payload = b64decode(field(obj, "payload", str, where), f"{where}.payload")
    signatures = []
    for i, entry in enumerate(field(obj, "signatures", list, where)):
        expect(isinstance(entry, dict), f"{where}.signatures[{i}] is not an object")
        keyid = entry.get("keyid") or ""
        expect(isinstance(keyid, str), f"{where}.signatures[{i}].keyid is not a string")
        sig = b64decode(field(entry, "sig", str, f"{where}.signatures[{i}]"), f"{where}.signatures[{i}].sig")
        signatures.append((keyid, sig))
    return Envelope(payload_type, payload, tuple(signatures))
