"""How the service's errors are documented in its OpenAPI schema.

Every route declares the problem answers it can give, so clients (and the
Schemathesis run in the suite) see each status code in the schema. One module,
shared by the core routes (service/app.py) and the response desk's routes
(service/respond.py), so the wording and the Problem model stay one.
"""

from __future__ import annotations

from typing import Any

from tapshield.service import schemas as s

_TEXT = {401: "No or unknown API key (or, for partners, a bad signature)",
         403: "The key's role may not do this",
         404: "Not found", 409: "The current state forbids this (see code)",
         413: "Request body over the limit", 422: "The request breaks a rule (see detail)",
         429: "Rate limit of the key exceeded",
         503: "Not ready, shutting down or the database is unavailable; retry"}


def err(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry for these problem status codes."""
    out: dict[int | str, dict[str, Any]] = {}
    for c in codes:
        out[c] = {"model": s.Problem, "description": _TEXT[c]}
        if c == 429:
            out[c]["headers"] = {"Retry-After": {"description": "Seconds to wait",
                                                 "schema": {"type": "string"}}}
    return out


AUTH = (401, 403, 413, 429, 503)
VALIDATION = {"description": "Validation Error", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}
