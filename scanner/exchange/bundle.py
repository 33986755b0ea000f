"""Signed library bundles: one file a publisher signs and any number of platforms verify.

A bundle is one JSON document, plain data (nothing in it can execute code)::

    {"format": "meshscan-bundle", "format_version": 1,
     "payload": "<the records, as canonical JSON text>",
     "signature": {"algorithm": "ed25519", "key": "ed25519:<fingerprint>", "value": "<base64>"}}

The signature covers ``meshscan-bundle-v1\\n`` + the payload's UTF-8 bytes exactly as stored,
so a subscriber checks it *before* the payload is parsed: a bundle that is unsigned, signed by
a key it does not trust, or changed after signing is refused with its reason code
(:mod:`scanner.exchange.errors`) and none of its records is read. The payload holds::

    {"format": "meshscan-bundle-payload", "bundle_format": 1,
     "descriptor_version": "ms3:...", "publisher": {"name", "key"},
     "sequence": n, "previous": {"sequence", "sha256"} | null, "created": "...",
     "include_names": false,
     "signatures": [{id, category, source, added, note, name, sha256, geometry_hash,
                     triangles, bodies, "rows": {"bodies": [...], "thresholds": b64, "vectors": b64}}],
     "allowlist": [{sha256, geometry_hash, added, note, by}],
     "tombstones": [{"id", "removed"}],
     "manifest": {"signatures", "rows", "allowlist", "tombstones"}}

``sequence`` only grows: a subscriber refuses a bundle older than the one it holds from the
same key (rollback). Each bundle is a full snapshot of the publisher's bank (as an HMA bank
fetch), and ``tombstones`` name the signatures removed since earlier versions, so a subscriber
that skipped versions still removes them. Descriptor rows travel as little-endian float32
(base64) with their body numbers, so every row - whole file, bodies, and the plane-cut piece
rows (body <= -100, :mod:`scanner.features.pieces`) - comes back bit for bit.

Privacy: unless the publisher asks (``include_names``), a bundle carries no file names, sources
or notes (they are often case ids or uploader names), and allowlist entries carry no note or
author. What remains is what matching needs: hashes, descriptors, categories and dates.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from scanner.exchange import errors as why
from scanner.exchange.errors import Refused
from scanner.exchange.keys import PublicKey, public_of
from scanner.features.version import DESCRIPTOR_SIZE, DESCRIPTOR_VERSION
from scanner.library import AllowEntry, LibraryError, Signature, SignatureLibrary, patch_record, patches_from_record
from scanner.util import sha256_hex, utc_now

FORMAT = "meshscan-bundle"
FORMAT_VERSION = 1
PAYLOAD_FORMAT = "meshscan-bundle-payload"
DOMAIN = b"meshscan-bundle-v1\n"
"""Prefixed to the payload before signing, so a bundle signature can never be replayed as a
signature over anything else made with the same key."""
MAX_BYTES = 256 << 20
"""Default cap on a bundle's size (bytes): a download past it is refused, not parsed."""


@dataclass
class Bundle:
    """A verified bundle: who published it, which version, and its records as a library."""

    publisher: str
    key: str
    sequence: int
    previous: dict[str, Any] | None
    created: str
    descriptor_version: str
    include_names: bool
    library: SignatureLibrary
    tombstones: list[dict[str, str]] = field(default_factory=list)
    sha256: str = ""
    """Of the bundle file's bytes: what a subscriber records as the version it holds."""

    def summary(self) -> str:
        return (
            f"{self.publisher} ({self.key}) version {self.sequence}: {len(self.library)} signature(s), "
            f"{len(self.library.allowlist)} allowlist entr{'y' if len(self.library.allowlist) == 1 else 'ies'}, "
            f"{len(self.tombstones)} tombstone(s), descriptor {self.descriptor_version}, created {self.created}"
        )


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _unb64(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype=dtype).copy()


def _signature_record(lib: SignatureLibrary, index: int, include_names: bool) -> dict[str, Any]:
    record = lib.signatures[index].record()
    if not include_names:
        record.update(name="", note="", source="")
    mask = lib.rows[:, 0] == index
    record["rows"] = {
        "bodies": [int(b) for b in lib.rows[mask, 1]],
        "thresholds": _b64(lib.thresholds[mask], "<f4"),
        "vectors": _b64(lib.vectors[mask], "<f4"),
    }
    record["patches"] = patch_record(lib.patches_of(index))
    return record


def _allow_record(entry: AllowEntry, include_names: bool) -> dict[str, Any]:
    record = asdict(entry)
    if not include_names:
        record.update(note="", by="")
    return record


def make_payload(
    lib: SignatureLibrary,
    publisher: str,
    key: str,
    sequence: int,
    previous: Bundle | None = None,
    include_names: bool = False,
) -> dict[str, Any]:
    """The records of ``lib`` as a bundle payload; ``previous`` (the publisher's last bundle)
    gives the tombstones: every signature it held that ``lib`` no longer does, plus its own
    tombstones not re-added since."""
    ids = {s.id for s in lib.signatures if s.disabled is None}  # a disabled signature is withdrawn
    tombstones: list[dict[str, str]] = []
    if previous is not None:
        now = utc_now()
        tombstones = [t for t in previous.tombstones if t["id"] not in ids]
        tombstones += [{"id": s.id, "removed": now} for s in previous.library.signatures if s.id not in ids]
    signatures = [_signature_record(lib, i, include_names) for i, s in enumerate(lib.signatures) if s.disabled is None]
    return {
        "format": PAYLOAD_FORMAT,
        "bundle_format": FORMAT_VERSION,
        "descriptor_version": lib.descriptor_version,
        "patch_version": lib.patch_version,
        "publisher": {"name": publisher, "key": key},
        "sequence": sequence,
        "previous": None if previous is None else {"sequence": previous.sequence, "sha256": previous.sha256},
        "created": utc_now(),
        "include_names": include_names,
        "signatures": signatures,
        "allowlist": [_allow_record(a, include_names) for a in lib.allowlist],
        "tombstones": tombstones,
        "manifest": {
            "signatures": len(signatures),
            "rows": int(len(lib.rows)),
            "allowlist": len(lib.allowlist),
            "tombstones": len(tombstones),
        },
    }


def sign_bundle(payload: dict[str, Any], private_key) -> bytes:  # noqa: ANN001 - Ed25519PrivateKey
    """The bundle file's bytes: ``payload`` as canonical JSON text, signed with ``private_key``."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    signature = private_key.sign(DOMAIN + text.encode("utf-8"))
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "payload": text,
        "signature": {
            "algorithm": "ed25519",
            "key": public_of(private_key).fingerprint,
            "value": base64.b64encode(signature).decode("ascii"),
        },
    }
    return json.dumps(doc, indent=1).encode("utf-8") + b"\n"


def make_bundle(
    lib: SignatureLibrary,
    private_key,  # noqa: ANN001 - Ed25519PrivateKey
    publisher: str,
    sequence: int | None = None,
    previous: bytes | None = None,
    include_names: bool = False,
) -> bytes:
    """Sign ``lib`` as a bundle. ``previous`` is the publisher's last bundle (its bytes): the new
    one is numbered after it (unless ``sequence`` says otherwise; it must still be higher) and
    carries tombstones for what was removed since."""
    own = public_of(private_key)
    prior = open_bundle(previous, [own], check_version=False) if previous is not None else None
    if sequence is None:
        sequence = prior.sequence + 1 if prior else 1
    if sequence < 1 or (prior is not None and sequence <= prior.sequence):
        floor = prior.sequence if prior else 0
        raise Refused(why.ROLLBACK, f"bundle version {sequence} must be above {floor} (versions only grow)")
    payload = make_payload(lib, publisher, own.fingerprint, sequence, prior, include_names)
    return sign_bundle(payload, private_key)


def _envelope(data: bytes, max_bytes: int) -> dict[str, Any]:
    """The outer document, checked for shape (not yet for its signature)."""
    if len(data) > max_bytes:
        raise Refused(why.TOO_LARGE, f"bundle is {len(data)} bytes, over the cap of {max_bytes}")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Refused(why.MALFORMED, "not a meshscan bundle (not JSON: truncated, or another kind of file)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise Refused(why.MALFORMED, "not a meshscan bundle (no 'meshscan-bundle' format marker)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise Refused(
            why.FORMAT_VERSION,
            f"bundle format {doc.get('format_version')!r}; this scanner reads {FORMAT_VERSION}",
        )
    if not isinstance(doc.get("payload"), str):
        raise Refused(why.MALFORMED, "bundle has no payload")
    return doc


def check_signature(doc: dict[str, Any], trusted: Sequence[PublicKey]) -> PublicKey:
    """The trusted key that signed ``doc``'s payload; :class:`Refused` when it is unsigned,
    signed by a key not in ``trusted``, or does not verify."""
    sig = doc.get("signature")
    if not sig:
        raise Refused(why.UNSIGNED, "bundle is not signed; only signed bundles are loaded")
    if not isinstance(sig, dict) or sig.get("algorithm") != "ed25519":
        raise Refused(why.MALFORMED, "bundle signature is not an Ed25519 signature")
    by_fingerprint = {k.fingerprint: k for k in trusted}
    key = by_fingerprint.get(str(sig.get("key")))
    if key is None:
        known = ", ".join(sorted(by_fingerprint)) or "none given"
        raise Refused(why.UNTRUSTED_KEY, f"bundle is signed by {sig.get('key')!s:.40}, not a trusted key ({known})")
    try:
        value = base64.b64decode(str(sig.get("value", "")), validate=True)
    except ValueError:
        raise Refused(why.BAD_SIGNATURE, "bundle signature is not valid base64") from None
    if not key.verify(value, DOMAIN + doc["payload"].encode("utf-8")):
        raise Refused(
            why.BAD_SIGNATURE, f"bundle signature by {key.fingerprint} does not verify: modified after signing"
        )
    return key


def open_bundle(
    data: bytes,
    trusted: Sequence[PublicKey],
    max_bytes: int = MAX_BYTES,
    check_version: bool = True,
) -> Bundle:
    """Verify a bundle's signature against ``trusted`` keys, then (only then) read its records.

    Raises :class:`Refused` with the reason: ``too-large``, ``malformed``, ``format-version``,
    ``unsigned``, ``untrusted-key``, ``bad-signature``, ``descriptor-version``."""
    doc = _envelope(data, max_bytes)
    key = check_signature(doc, trusted)
    try:
        payload = json.loads(doc["payload"])
    except ValueError:
        raise Refused(why.MALFORMED, "bundle payload is not JSON") from None
    if not isinstance(payload, dict) or payload.get("format") != PAYLOAD_FORMAT:
        raise Refused(why.MALFORMED, "bundle payload is not a meshscan bundle payload")
    if payload.get("bundle_format") != FORMAT_VERSION:
        raise Refused(why.FORMAT_VERSION, f"bundle payload format {payload.get('bundle_format')!r}")
    if (payload.get("publisher") or {}).get("key") != key.fingerprint:
        raise Refused(why.MALFORMED, "bundle payload names another key than the one that signed it")
    if check_version:
        if payload.get("descriptor_version") != DESCRIPTOR_VERSION:
            raise Refused(
                why.DESCRIPTOR_VERSION,
                f"bundle holds descriptor {payload.get('descriptor_version')!r}; this scanner computes "
                f"{DESCRIPTOR_VERSION!r} (the publisher must re-enrol and publish with this version)",
            )
    try:
        return _decode(payload, sha256_hex(data))
    except (KeyError, TypeError, ValueError, LibraryError) as exc:
        raise Refused(why.MALFORMED, f"bundle records are malformed: {exc}") from None


def _decode(payload: dict[str, Any], digest: str) -> Bundle:
    publisher = payload["publisher"]
    lib = SignatureLibrary.create(name=str(publisher["name"]))
    lib.descriptor_version = str(payload["descriptor_version"])
    width = None
    for record in payload["signatures"]:
        record = dict(record)
        rows = record.pop("rows")
        patches = patches_from_record(record.pop("patches", None))
        if payload.get("patch_version") != lib.patch_version:  # codes of another kind: not comparable
            patches = patches[:0]
        bodies = [int(b) for b in rows["bodies"]]
        thresholds = _unb64(rows["thresholds"], "<f4").astype(np.float32)
        flat = _unb64(rows["vectors"], "<f4").astype(np.float32)
        if not bodies or len(thresholds) != len(bodies) or flat.size % len(bodies):
            raise ValueError(f"signature {record.get('id')!r}: rows, thresholds and vectors disagree")
        vectors = flat.reshape(len(bodies), -1)
        if width is not None and vectors.shape[1] != width:
            raise ValueError("descriptor rows of different lengths")
        if lib.descriptor_version == DESCRIPTOR_VERSION and vectors.shape[1] != DESCRIPTOR_SIZE:
            raise ValueError(
                f"descriptor rows of {vectors.shape[1]} values, not the {DESCRIPTOR_SIZE} of {DESCRIPTOR_VERSION}"
            )
        width = vectors.shape[1]
        if not len(lib.signatures):
            lib.vectors = np.zeros((0, width), dtype=np.float32)
        lib.add_signature(Signature(**record), vectors, bodies, thresholds, patches)
    lib.allowlist = [AllowEntry(**a) for a in payload["allowlist"]]
    tombstones = [{"id": str(t["id"]), "removed": str(t.get("removed", ""))} for t in payload["tombstones"]]
    return Bundle(
        publisher=str(publisher["name"]),
        key=str(publisher["key"]),
        sequence=int(payload["sequence"]),
        previous=payload.get("previous"),
        created=str(payload["created"]),
        descriptor_version=lib.descriptor_version,
        include_names=bool(payload.get("include_names")),
        library=lib,
        tombstones=tombstones,
        sha256=digest,
    )
