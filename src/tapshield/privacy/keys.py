"""Versioned keys kept outside the database, behind a port a KMS could implement.

Each *purpose* (``token`` for the keyed hash, ``seal`` for AES-GCM) has
numbered versions and one *current* version. Writers use the current one;
readers use whatever version a stored value names, so after a rotation both
are readable until the background re-encryption has moved every value
(:func:`tapshield.privacy.vault.Vault.reencrypt`) and the old version is
retired.

Rotation without downtime is two steps: add the new version everywhere
(every process can now *read* it), then make it current (``tapshield privacy
rotate`` does both on one key directory; with several hosts, distribute the
new file before switching ``current``).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

KEY_BYTES = 32
PURPOSES = ("token", "seal")
_NAME = re.compile(r"^([a-z][a-z0-9_-]{0,31})\.v([1-9][0-9]{0,5})\.key$")


class MissingKeyError(LookupError):
    """A key that is not there (a version named by stored data, or no key at all)."""


class KeyProvider(Protocol):
    """Where key material comes from. Implementations: a directory, environment
    variables; a KMS or Vault adapter answers the same three questions."""

    def current(self, purpose: str) -> int:
        """The version new values are written with."""
        ...

    def key(self, purpose: str, version: int) -> bytes:
        """The 32 bytes of one version (raises :class:`MissingKeyError` if unknown)."""
        ...

    def versions(self, purpose: str) -> list[int]:
        ...


def _decode(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MissingKeyError(f"{where}: not base64") from None
    if len(raw) != KEY_BYTES:
        raise MissingKeyError(f"{where}: a key is {KEY_BYTES} bytes, this one {len(raw)}")
    return raw


class FileKeyProvider:
    """Keys as files ``<purpose>.v<N>.key`` (base64, mode 0600) in one directory, with
    ``<purpose>.current`` naming the current version (default: the highest)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._cache: dict[tuple[str, int], bytes] = {}

    def versions(self, purpose: str) -> list[int]:
        if not self.directory.is_dir():
            return []
        out = []
        for p in self.directory.iterdir():
            m = _NAME.match(p.name)
            if m and m.group(1) == purpose:
                out.append(int(m.group(2)))
        return sorted(out)

    def current(self, purpose: str) -> int:
        marker = self.directory / f"{purpose}.current"
        if marker.exists():
            text = marker.read_text(encoding="utf-8").strip()
            if not text.isdigit():
                raise MissingKeyError(f"{marker}: not a version number")
            v = int(text)
            if v not in self.versions(purpose):
                raise MissingKeyError(f"{marker} names version {v}, which has no key file")
            return v
        vs = self.versions(purpose)
        if not vs:
            raise MissingKeyError(f"no {purpose!r} key in {self.directory} "
                            f"(tapshield privacy keygen --dir {self.directory})")
        return vs[-1]

    def key(self, purpose: str, version: int) -> bytes:
        k = self._cache.get((purpose, version))
        if k is None:
            p = self.directory / f"{purpose}.v{version}.key"
            if not p.exists():
                raise MissingKeyError(
                    f"{purpose!r} key version {version} is not in {self.directory}")
            k = self._cache[(purpose, version)] = _decode(p.read_text(encoding="utf-8"), str(p))
        return k

    def add(self, purpose: str) -> int:
        """Write a new random version (not yet current); returns its number."""
        if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", purpose):
            raise ValueError(f"bad key purpose {purpose!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        v = (self.versions(purpose) or [0])[-1] + 1
        p = self.directory / f"{purpose}.v{v}.key"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
        return v

    def make_current(self, purpose: str, version: int) -> None:
        if version not in self.versions(purpose):
            raise MissingKeyError(f"{purpose!r} key version {version} does not exist")
        tmp = self.directory / f".{purpose}.current.tmp"
        tmp.write_text(f"{version}\n", encoding="utf-8")
        tmp.replace(self.directory / f"{purpose}.current")  # atomic switch


class EnvKeyProvider:
    """Keys from the environment: ``TAPSHIELD_KEY_<PURPOSE>_V<N>`` (base64) and
    ``TAPSHIELD_KEY_<PURPOSE>_CURRENT`` (default: the highest version)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def _prefix(self, purpose: str) -> str:
        return f"TAPSHIELD_KEY_{purpose.upper().replace('-', '_')}_V"

    def versions(self, purpose: str) -> list[int]:
        pre = self._prefix(purpose)
        return sorted(int(k[len(pre):]) for k in self.environ
                      if k.startswith(pre) and k[len(pre):].isdigit())

    def current(self, purpose: str) -> int:
        name = f"TAPSHIELD_KEY_{purpose.upper().replace('-', '_')}_CURRENT"
        if name in self.environ:
            v = int(self.environ[name])
            if v not in self.versions(purpose):
                raise MissingKeyError(f"{name} names version {v}, which is not set")
            return v
        vs = self.versions(purpose)
        if not vs:
            raise MissingKeyError(
                f"no {purpose!r} key in the environment ({self._prefix(purpose)}1)")
        return vs[-1]

    def key(self, purpose: str, version: int) -> bytes:
        name = f"{self._prefix(purpose)}{version}"
        if name not in self.environ:
            raise MissingKeyError(f"{name} is not set")
        return _decode(self.environ[name], name)


def default_provider(directory: Path | str | None = None) -> KeyProvider:
    """``directory`` (or ``$TAPSHIELD_KEYS_DIR``) if given, else the environment."""
    d = directory or os.environ.get("TAPSHIELD_KEYS_DIR")
    return FileKeyProvider(d) if d else EnvKeyProvider()
