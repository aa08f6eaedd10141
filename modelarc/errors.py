"""Every error modelarc raises on purpose lives here.

The CLI maps any ``ModelarcError`` to one ``error: <message>`` line and a non-zero exit code, and the API maps it to
problem+json, each in one place. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations


class ModelarcError(Exception):
    """Base of every expected failure; ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class UsageError(ModelarcError):
    """The caller asked for something malformed (a bad ref, a bad date, a bad option)."""

    exit_code = 2


class InvalidRefError(UsageError):
    """A REF string that is neither ``ns/name:tag`` nor ``ns/name@sha256:<hex>``."""


class ProvenanceConflictError(UsageError):
    """A push of bytes the model already holds as a snapshot, stating provenance other than that snapshot's: its
    provenance is fixed when first recorded, so the push is refused rather than the given values dropped."""


class LineageCycleError(ProvenanceConflictError):
    """A new snapshot declaring a parent that already descends from it (recorded, or declared by a snapshot whose
    parent the catalog lacked then): lineage is a derivation order, so a model cannot be its own ancestor. An edge
    a later recording would add to an existing snapshot is not refused this way but left out and reported."""


class ModelNameClashError(UsageError):
    """A new model whose ``namespace/name`` equals an existing model's but for case (``Acme/tiny`` beside
    ``acme/tiny``), or whose new namespace is an existing one spelled in another case (``ACME/new`` beside
    ``acme/...``). Refused wherever a model is created: Hub repository ids are case-insensitive, so such a name reads
    as the existing model's to anyone using the Hub routes (docs/SECURITY.md, "Lookalike model names"). The message
    names the spelling the archive already has."""


class NotFoundError(ModelarcError):
    """Something named by the user does not exist."""

    exit_code = 3


class ModelNotFoundError(NotFoundError):
    pass


class SnapshotNotFoundError(NotFoundError):
    pass


class TagNotFoundError(NotFoundError):
    pass


class AmbiguousRefError(UsageError):
    """A snapshot id prefix matches more than one snapshot."""


class SourceError(ModelarcError):
    """The files to archive cannot be read or do not exist."""

    exit_code = 4


class SafetensorsFormatError(SourceError):
    """A safetensors file is malformed; the message names the file and, where known, the tensor."""


class IntegrityError(ModelarcError):
    """Stored bytes do not hash to what they claim: the archive refuses to hand them out."""

    exit_code = 5


class ObjectMissingError(IntegrityError):
    pass


class ObjectCorruptError(IntegrityError):
    pass


class ObjectFormatError(IntegrityError):
    """A stored object's header is malformed or names an unknown codec or format version."""


class UnsupportedFormatError(ModelarcError):
    """Something on disk of a format version this modelarc does not know: one a newer modelarc wrote (docs/FORMAT.md
    "Versions"), refused rather than misread, and never rewritten. A home's ``config.json`` whose ``"format"`` is
    larger than this modelarc reads (every command refuses the home, ``init`` too, before anything is changed), a
    run document whose ``"version"`` it does not know (``rerun`` and a rebuild refuse the run). The message names the
    file or document and the version. Exit 17, as for a stored object of a newer format (the subclass below)."""

    exit_code = 17


class UnsupportedObjectError(UnsupportedFormatError):
    """A stored object of a format version or codec id this modelarc does not know: one a newer modelarc wrote
    (docs/FORMAT.md "Versions"), not damaged bytes, so not an ``IntegrityError``. The message names the object and
    what it does not know, once. scrub and fsck report it ``unsupported``; only a copy this modelarc verifies (a
    mirror's, a push's bytes) replaces it, the unreadable one kept in quarantine/ (a flipped version or codec byte
    reads the same); gc refuses to run rather than guess which bases it needs."""


class StoredValueError(IntegrityError):
    """What a backend holds under a key is not a value a reader may take: not a regular file (a symbolic link, FIFO,
    device, socket or folder put in its place), or larger than the bound the reader asked for. Raised before a byte
    of it is read, so a damaged store is reported, never read until memory runs out or a read that never returns.
    The store reports it as a corrupt object (``ObjectCorruptError``), a record reader as a damaged record."""


class DeltaBaseError(IntegrityError):
    """A delta object cannot be decoded because its base is missing, corrupt, or not reachable by this reader.

    The delta's own bytes may be intact: repairing it means repairing (or fetching) its base, named here.
    """


class DeltaChainError(ObjectCorruptError):
    """A delta object's base chain is deeper than the format allows, or comes back on itself (a cycle)."""


class SignatureError(ModelarcError):
    """A signature bundle is missing, malformed, or does not verify against a trusted key."""

    exit_code = 6


class SigningKeyError(ModelarcError):
    """No signing key, or a key file that cannot be used."""

    exit_code = 6


class DestinationError(ModelarcError):
    """Pull would write outside its destination or overwrite an existing file without ``--force``."""

    exit_code = 7


class LockedError(ModelarcError):
    """Another process holds the store lock (e.g. gc while a push runs)."""

    exit_code = 8


class LockLostError(LockedError):
    """A holder's store lock expired under it (paused, or cut off from the catalog): it must record nothing."""


class NotInitializedError(ModelarcError):
    """The modelarc home has not been initialised; run ``modelarc init``."""

    exit_code = 9


class WithdrawnError(ModelarcError):
    """The snapshot was tombstoned: its provenance stays, its weights are no longer handed out."""

    exit_code = 10


class AccessDeniedError(ModelarcError):
    """The weight bytes of a gated, embargoed or restricted snapshot, asked for without a grant. Everything else
    about the snapshot (catalog entry, provenance, file names, sizes, hashes, signature) stays public."""

    exit_code = 15


class GGUFFormatError(SourceError):
    """A GGUF file is malformed; the message names the file and, where known, the key or tensor."""


class RemoteError(ModelarcError):
    """A remote archive could not be reached, or answered with an error."""

    exit_code = 11


class RemoteAuthError(RemoteError):
    """The remote refused the request: no token, a wrong one, or one without the needed scope."""

    exit_code = 12


class NamespaceRefusedError(ModelarcError):
    """A remote refused a push outside the namespaces its token may push to. Not a ``RemoteError``: the remote
    answered, and a mirror sync records that one snapshot as refused and goes on with the rest."""

    exit_code = 12


class PolicyLooseningError(ModelarcError):
    """A push token asked a server to set an access policy that withholds less than the one it holds (now, or from
    some embargo date on): a push token may tighten a policy (a served mirror kept in step by its primary), only an
    admin token may loosen one. 403 ``PolicyLoosening``; the message names the policy and from when."""

    exit_code = 15


class AccessNotRequestableError(UsageError):
    """An access request for a model that is not gated: a public model's weights need no grant, and a restricted
    model's are for admin tokens whatever is granted, so a request could only be "granted" and still refused. 409:
    the model's current policy, not the request, is what stands in the way; the message names the level."""


class PayloadTooLargeError(UsageError):
    """An upload is bigger than it declared, or than any object may be."""


class UnsupportedMediaTypeError(UsageError):
    """A request body in a media type the route does not read (a JSON route sent ``text/plain``): 415."""


class ServerBusyError(ModelarcError):
    """The server holds as many response bytes in memory as it may (``MODELARC_SEND_MEMORY``), or as many request
    body bytes (``MODELARC_RECEIVE_MEMORY``), and none came free while the request waited: 503 with
    ``Retry-After``, so a client tries again instead of failing for good."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTimeoutError(ModelarcError):
    """A client stopped sending its request body, or sent it slower than the server accepts
    (``MODELARC_RECEIVE_TIMEOUT``, ``MODELARC_RECEIVE_MIN_RATE``): 408, and the connection is closed, so what the
    server had read of the body is let go."""


class SourceLimitError(SourceError):
    """A source is beyond one of the documented limits (docs/FORMAT.md, "Limits"): too many tensors in a file or a
    snapshot, or a header too large. Refused before any object is written."""


class DiskFullError(ModelarcError):
    """A write failed because the file system is full (ENOSPC) or over quota (EDQUOT); the message says which
    folder (the store or a pull's destination) so the user knows where to free space."""

    exit_code = 13


class StoreWriteLostError(ModelarcError):
    """A write into a store lost its temp file before the rename that would have made it an object (an S3 store: its
    multipart upload was aborted before it completed): something cleared the store's ``tmp/`` meanwhile, which gc
    does holding the exclusive store lock, so the writer had lost its own (paused or cut off past its expiry).
    Nothing was stored under the key. Push, pull --remote, repair and mirror sync report this as ``LockLostError``
    once they have seen their lock gone (archive/store_lock.py ``explains_lost_writes``); storage cannot know about
    locks, so it names the file or upload."""


class StoreAccessError(ModelarcError):
    """The store's backend cannot be used: an S3-compatible endpoint refused the credentials, has no such bucket,
    or could not be reached (after the client's retries). The message names the bucket and endpoint, never the
    credentials."""

    exit_code = 14


class MirrorUnreachableError(StoreAccessError):
    """A configured mirror cannot be read: its folder is gone (an unmounted disk), or its bucket or served archive
    does not answer. The message names the mirror and its target. Such a mirror is reported, never made again:
    only ``mirror add`` creates a mirror's folder."""


class MissingObjectsError(ModelarcError):
    """A commit named objects the receiving store does not have; ``missing`` lists them so the sender can resume."""

    exit_code = 5

    def __init__(self, snapshot: str, missing: list[str], why: str = "is missing") -> None:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        super().__init__(f"snapshot {snapshot} is incomplete: object {missing[0]} {why}{more}")
        self.snapshot = snapshot
        self.missing = missing


class DataManifestError(UsageError):
    """A training-data manifest that does not parse or does not match the schema; names the field."""


class CatalogValueError(ModelarcError):
    """The catalog database refused to hold a value (text it cannot store, such as a NUL on PostgreSQL or a lone
    surrogate, or a value longer than its column): raised from a savepoint (``registry.db.savepoint``), so only that
    unit of work is undone and the caller can refuse the input that carried it."""


class ListenError(ModelarcError):
    """``serve`` cannot listen on its host and port (in use, not an address of this machine, a privileged port):
    its own exit code, so a service manager can tell it from a catalog or usage error."""

    exit_code = 16


class CatalogReadOnlyError(ModelarcError):
    """The catalog database refuses writes (an SQLite file or folder without write permission, a read-only mount,
    a PostgreSQL read-only transaction): named once, in registry/db.py, rather than a driver's traceback."""


class CatalogBusyError(ServerBusyError):
    """A change waited longer than ``MODELARC_LOCK_WAIT`` for a lock another transaction holds on the catalog (the
    lineage turn, a namespace's names, a model's policies; SQLite's one writer): nothing of it was written, and it
    can be tried again. Bounded so that one stuck holder (a server whose bucket stopped answering inside its
    transaction) cannot stall every push on every server of the catalog, each holding a connection; 503 from a
    server, like a full one."""


class RecordError(IntegrityError):
    """A catalog record in the store (``records/``, docs/FORMAT.md "Catalog records") whose body does not hash to
    the sha256 in its name, or that is not a record this version can read; the message names it."""


class CatalogNotEmptyError(UsageError):
    """``rebuild-catalog`` was pointed at a catalog that already holds snapshots: it only fills an empty one."""


# One table from error class to HTTP answer, shared by /v1, the Hub routes, the transfer routes and the HTML pages,
# and read back by the remote client (archive/remote/client.py) from the X-Error-Code header, so an error raised on
# a server is raised again, as the same class, on the client. First match wins: subclasses come before their bases.
# A withdrawn snapshot is 410 Gone everywhere: it was removed on purpose and stays removed (docs/API.md, Errors).
HTTP_ERRORS: tuple[tuple[type[ModelarcError], int, str], ...] = (
    (MissingObjectsError, 409, "MissingObjects"),
    (WithdrawnError, 410, "Withdrawn"),
    # the Hub's code for a gated repository: huggingface_hub raises GatedRepoError for it (anonymous or not granted)
    (AccessDeniedError, 403, "GatedRepo"),
    (PolicyLooseningError, 403, "PolicyLoosening"),  # a push token may tighten a policy, never loosen one
    (ModelNotFoundError, 404, "ModelNotFound"),
    (TagNotFoundError, 404, "TagNotFound"),
    (SnapshotNotFoundError, 404, "SnapshotNotFound"),
    (NotFoundError, 404, "NotFound"),
    (PayloadTooLargeError, 413, "PayloadTooLarge"),
    # a new snapshot whose declared parent descends from it (LineageCycleError) is a ProvenanceConflict on the wire: a
    # code of its own would reach an older client as an unknown 409, which it reads as MissingObjects (it did)
    (ProvenanceConflictError, 409, "ProvenanceConflict"),  # a re-push restating a recorded snapshot's provenance
    (ModelNameClashError, 409, "ModelNameClash"),  # a new model named like an existing one but for case
    (AccessNotRequestableError, 409, "AccessNotRequestable"),  # an access request for a model that is not gated
    (UnsupportedMediaTypeError, 415, "UnsupportedMediaType"),
    (ServerBusyError, 503, "ServerBusy"),  # the server's memory for responses or bodies is taken for now: retry later
    (RequestTimeoutError, 408, "RequestTimeout"),  # the client stopped sending its body: closed, not kept waiting
    (DiskFullError, 507, "DiskFull"),  # Insufficient Storage (RFC 4918): the server's disk, not the request
    (StoreAccessError, 503, "StoreUnavailable"),  # the server's own store (its bucket) failed, not the request
    # a training-data manifest an offer names fails its schema: a receiver's check that failed, as FORMAT.md gives it
    (DataManifestError, 422, "DataManifestInvalid"),
    (UsageError, 400, "BadRequest"),
    (SignatureError, 422, "SignatureInvalid"),
    (IntegrityError, 422, "IntegrityFailed"),
    (UnsupportedObjectError, 422, "UnsupportedObject"),  # an object of a newer format: not damaged
    (UnsupportedFormatError, 422, "UnsupportedFormat"),  # a document of a newer format (a run document)
    (ModelarcError, 422, "Refused"),  # understood and refused (format, source, lock)
)


def http_error(exc: ModelarcError) -> tuple[int, str]:
    """(HTTP status, X-Error-Code) for an expected failure."""
    for cls, status, code in HTTP_ERRORS:
        if isinstance(exc, cls):
            return status, code
    return 422, "Refused"


def error_class(code: str | None) -> type[ModelarcError] | None:
    """The class an X-Error-Code names, for a client raising what the server raised."""
    return next((cls for cls, _status, c in HTTP_ERRORS if c == code), None)
