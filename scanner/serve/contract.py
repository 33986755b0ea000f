"""What the OpenAPI document says each endpoint answers, so that a client (or schemathesis) can
hold the server to it: the records of ``/v1/scan`` are the verdict contract
(``scanner/data/verdict.schema.json``, embedded as it is), ``/v1/hash`` and ``/v1/status`` have
models, and every refusal (400, 401, 413, 503) is described with its body, an error with a
reason code. The endpoints read their bodies themselves, so FastAPI cannot infer any of this.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """A refused request: ``detail`` for a person, ``reason`` (a code) for a program."""

    detail: str
    reason: str | None = Field(default=None, description="busy, limit:upload-bytes, bad-request; absent on 401")


class ReloadAttemptBody(BaseModel):
    at: str = Field(description="When the attempt ended (UTC, ISO 8601)")
    trigger: str = Field(description="SIGHUP, or 'manifest changed'")
    ok: bool = Field(description="False: the library was refused and the previous one is still in use")
    swapped: bool = Field(description="A new library is in use (ok and not swapped: the version was unchanged)")
    library_version: str | None
    error: str | None = Field(description="Why it was refused, with a reason code ([library], [internal])")


class LibraryReloadBody(BaseModel):
    enabled: bool = Field(description="--reload-library was given")
    poll_seconds: float | None
    attempts: int
    last: ReloadAttemptBody | None


class StatusBody(BaseModel):
    scanner_version: str
    library_version: str | None
    library_loaded_at: str = Field(description="When the library in use was loaded (UTC, ISO 8601)")
    library_reload: LibraryReloadBody
    descriptor_version: str
    model_version: str | None
    workers: int
    queue_capacity: int
    queue_depth: int = Field(description="Requests admitted and not yet scanning (receiving or waiting)")
    in_flight: int
    max_upload_bytes: int
    auth: bool
    db: bool = Field(description="Served verdicts are recorded in a results database (--db)")


class SignalsBody(BaseModel):
    """One mesh's signals: hashes, descriptor rows and patch codes, never geometry."""

    sha256: str | None
    geometry_hash: str
    descriptor_version: str
    rows: list[list[float]]
    row_bodies: list[int]
    member: str | None = None
    triangles: int = 0
    bodies: int = 0
    patches: str | None = Field(
        default=None, description="Distinct patch codes (the mesh_patches signal): what finds a cut or fused copy"
    )
    affine: list[float] | None = Field(
        default=None, description="The whitened whole-file row: what finds a copy stretched along some axis"
    )
    row_shares: list[float] | None = Field(
        default=None, description="Each row's share of the mesh's surface: a known file's cut piece matches a large one"
    )
    row_solidity: list[float | None] | None = Field(
        default=None, description="Each row's solidity: a convex row matches a known file's cut piece only corroborated"
    )


class LookupNote(BaseModel):
    """Something a lookup of the signals could not show that a scan of the file would."""

    kind: str = Field(description="The kind of match concerned (local, stretched)")
    reason: str = Field(description="no-patch-codes, no-affine-row, patches-sampled")
    detail: str


class HashError(BaseModel):
    reason: str
    detail: str


class HashBody(BaseModel):
    name: str
    signals: list[SignalsBody]
    error: HashError | None = Field(description="Why nothing could be hashed (time, memory, crashed worker)")


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "model": ErrorBody}


UPLOAD_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed upload (multipart without a 'file' field, a bad Content-Length)"),
    413: _error("The upload is larger than --max-upload-bytes"),
    503: _error("Every worker is busy and the queue is full: retry after Retry-After seconds"),
}
AUTH_REFUSAL: dict[int | str, dict[str, Any]] = {401: _error("No valid API key (with --api-key-file)")}
LOOKUP_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: _error("A body that cannot be parsed at all (not UTF-8 JSON)"),
    **AUTH_REFUSAL,
}


@cache
def verdict_schema() -> dict[str, Any]:
    """The verdict contract as a schema object that can sit inside an OpenAPI 3.1 document."""
    schema = json.loads(files("scanner.data").joinpath("verdict.schema.json").read_text("utf-8"))
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def _ok(key: str, items: dict[str, Any]) -> dict[str, Any]:
    """An ``openapi_extra`` whose 200 answer is ``{key: [items, ...]}`` and nothing else."""
    body = {"type": "object", "required": [key], "additionalProperties": False,
            "properties": {key: {"type": "array", "items": items}}}  # fmt: skip
    return {"responses": {"200": {"content": {"application/json": {"schema": body}}}}}


def scan_responses() -> dict[str, Any]:
    """``openapi_extra`` for ``POST /v1/scan``: 200 is ``{"records": [verdict, ...]}``."""
    return _ok("records", verdict_schema())


def lookup_responses() -> dict[str, Any]:
    """``openapi_extra`` for ``POST /v1/lookup``: 200 is ``{"matches": [match, ...], "notes":
    [note, ...]}``, each match as in a verdict record."""
    extra = _ok("matches", verdict_schema()["properties"]["matches"]["items"])
    body = extra["responses"]["200"]["content"]["application/json"]["schema"]
    body["required"].append("notes")
    body["properties"]["notes"] = {"type": "array", "items": LookupNote.model_json_schema()}
    return extra
