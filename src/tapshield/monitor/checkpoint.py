"""Export and restore the whole live detection state (a monitor, or the pipeline around it).

A restart in the middle of an outage must carry on where the process stopped:
the learned seasonal profile, every detector's CUSUM, the slices watched, the
recent events that levels and diagnosis look back on, the open alerts with
their paging history and the open incidents. Rebuilding that from a
hand-written schema would tie this module to every internal of the monitor
(which keeps changing); instead the live object graph is serialised as it is,
and two guards make that safe to read back from a database:

* **authenticity**: the blob is HMAC-SHA-256 signed with a key kept *outside*
  the database (the service keeps it beside its API keys file). Someone who
  can write the database but not that file cannot get a forged state loaded;
* **a closed vocabulary**: even a signed blob is read by an unpickler that
  only builds tapshield's own classes, numpy arrays, polars frames and plain
  value types, and calls no function other than the few that rebuild those
  (no ``os``, ``subprocess``, ``eval``...).

A blob also records the tapshield version and a fingerprint of the
configuration it was made under: after an upgrade or a config change
:func:`restore_state` raises :class:`StaleCheckpointError` and the caller starts
fresh (a wrong restore is worse than relearning).

One rule for the classes serialised: an object whose attributes are numpy
*views* into another of its arrays rebuilds them in ``__setstate__`` (pickle
copies each array on its own; :class:`~tapshield.monitor.detectors.DetectorBank`
does). ``tests/monitor/test_checkpoint.py`` holds a restored monitor to the
uninterrupted one, event for event.

This module does not know what it serialises: :func:`export_state` takes any
object built from the allowed vocabulary (the service passes its
:class:`~tapshield.pipeline.Analysis`, whose monitor is one part).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import pickle
import zlib
from typing import Any

from tapshield import __version__

MAGIC = b"TSCK1"
"""Format tag: magic, 32-byte MAC, 4-byte header length, JSON header, zlib(pickle)."""

_SAFE_BUILTINS = frozenset({"set", "frozenset", "slice", "range", "complex", "bytearray",
                            "bytes", "dict", "list", "tuple", "int", "float", "str", "bool",
                            "object"})
_SAFE_GLOBALS = {
    ("collections", "deque"), ("collections", "OrderedDict"), ("collections", "Counter"),
    ("collections", "defaultdict"),
    ("datetime", "datetime"), ("datetime", "timedelta"), ("datetime", "timezone"),
    ("datetime", "date"), ("datetime", "time"),
    ("decimal", "Decimal"), ("zoneinfo", "ZoneInfo"), ("zoneinfo._zoneinfo", "ZoneInfo"),
    ("copyreg", "_reconstructor"), ("pathlib", "PosixPath"), ("pathlib", "Path"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("polars.dataframe.frame", "DataFrame"), ("polars.series.series", "Series"),
    ("tapshield.diagnose.diagnosis", "diagnose"),
}
"""Every global the live state needs; anything else is refused."""


class StaleCheckpointError(ValueError):
    """The checkpoint cannot be used (other version or config, bad MAC, unknown type)."""


def _safe_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as pickle uses it for bound methods: public names of tapshield
    objects, and the time zone's own rebuilder."""
    import zoneinfo

    if obj is zoneinfo.ZoneInfo and name == "_unpickle":
        return zoneinfo.ZoneInfo._unpickle  # type: ignore[attr-defined]
    if name.startswith("_") or not type(obj).__module__.startswith("tapshield."):
        raise StaleCheckpointError(f"checkpoint asks for attribute {name!r} of "
                              f"{type(obj).__name__}: refused")
    return getattr(obj, name)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins":
            if name in _SAFE_BUILTINS:
                return super().find_class(module, name)
            if name == "getattr":
                return _safe_getattr
        elif (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        elif module.startswith("tapshield.") and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found  # tapshield's own classes (instances are rebuilt, not called)
        raise StaleCheckpointError(f"checkpoint needs {module}.{name}: not an allowed type")


def fingerprint(*parts: Any) -> str:
    """A stable digest of configuration objects (their ``repr``, which dataclasses make
    field by field): a restore under another config is refused."""
    h = hashlib.sha256(__version__.encode())
    for p in parts:
        h.update(b"\0" + repr(p).encode())
    return h.hexdigest()[:32]


def export_state(obj: Any, key: bytes, *, config: str = "", meta: dict[str, Any] | None = None,
                 level: int = 1) -> bytes:
    """The signed, compressed state of ``obj`` (see the module docstring)."""
    header = json.dumps({"version": __version__, "config": config, **(meta or {})},
                        sort_keys=True).encode()
    body = zlib.compress(pickle.dumps(obj, protocol=5), level)
    signed = len(header).to_bytes(4, "big") + header + body
    return MAGIC + hmac.new(key, signed, hashlib.sha256).digest() + signed


def read_header(blob: bytes, key: bytes) -> dict[str, Any]:
    """The checked header of a blob (raises :class:`StaleCheckpointError`)."""
    return _open(blob, key)[0]


def _open(blob: bytes, key: bytes) -> tuple[dict[str, Any], bytes]:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 36:
        raise StaleCheckpointError("not a tapshield checkpoint")
    mac, signed = blob[len(MAGIC):len(MAGIC) + 32], blob[len(MAGIC) + 32:]
    if not hmac.compare_digest(mac, hmac.new(key, signed, hashlib.sha256).digest()):
        raise StaleCheckpointError("checkpoint signature does not match this service's key")
    n = int.from_bytes(signed[:4], "big")
    header = json.loads(signed[4:4 + n])
    return header, signed[4 + n:]


def restore_state(blob: bytes, key: bytes, *, config: str = "") -> tuple[Any, dict[str, Any]]:
    """``(object, header)`` from :func:`export_state`'s blob.

    Raises :class:`StaleCheckpointError` when the blob is not authentic, was made
    by another tapshield version or under another configuration, or holds a
    type outside the allowed vocabulary.
    """
    header, body = _open(blob, key)
    if header.get("version") != __version__:
        raise StaleCheckpointError(f"checkpoint made by tapshield {header.get('version')}, "
                              f"this is {__version__}")
    if header.get("config") != config:
        raise StaleCheckpointError("checkpoint made under another configuration")
    try:
        obj = _Unpickler(io.BytesIO(zlib.decompress(body))).load()
    except StaleCheckpointError:
        raise
    except Exception as exc:  # truncated, a class that changed shape: start fresh
        raise StaleCheckpointError(f"checkpoint unreadable: {type(exc).__name__}: {exc}") from None
    return obj, header
