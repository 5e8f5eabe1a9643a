"""``tapshield privacy``: keys for tokens and sealed identifiers, rotation, re-encryption.

Keys live in a directory (``--keys`` or ``$TAPSHIELD_KEYS_DIR``), never in the
database. Rotation without downtime: ``rotate`` adds a version and makes it
current (old values stay readable), ``reencrypt`` moves the vault's rows to it
in the background, ``status`` shows when the old version can be retired.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from tapshield.cli._app import UsageError, app, console, friendly

privacy_app = typer.Typer(
    name="privacy", no_args_is_help=True, add_completion=False,
    help="Personal-data keys: generate, rotate, re-encrypt the vault, status.")
app.add_typer(privacy_app, name="privacy")

_KEYS = typer.Option(None, "--keys", help="Key directory (default: $TAPSHIELD_KEYS_DIR).")
_PURPOSES = ("token", "seal")


def _dir(keys: Path | None) -> Path:
    d = keys or (Path(os.environ["TAPSHIELD_KEYS_DIR"]) if os.environ.get("TAPSHIELD_KEYS_DIR")
                 else None)
    if d is None:
        raise UsageError("which key directory? --keys DIR or $TAPSHIELD_KEYS_DIR")
    return d


@privacy_app.command("keygen")
@friendly
def keygen_cmd(keys: Path | None = _KEYS) -> None:
    """Create the first token and seal keys (mode 0600) if they do not exist."""
    from tapshield.privacy.keys import FileKeyProvider

    p = FileKeyProvider(_dir(keys))
    for purpose in _PURPOSES:
        if p.versions(purpose):
            console.print(f"{purpose}: version {p.current(purpose)} exists, kept")
        else:
            console.print(f"{purpose}: version {p.add(purpose)} created")


@privacy_app.command("rotate")
@friendly
def rotate_cmd(
    purpose: str = typer.Argument("seal", help="seal (AES-GCM) or token (HMAC: a re-keying "
                                  "event, see docs/trust.md)."),
    keys: Path | None = _KEYS,
) -> None:
    """Add a key version and make it current; values sealed before stay readable."""
    from tapshield.privacy.keys import FileKeyProvider

    if purpose not in _PURPOSES:
        raise UsageError(f"purpose is one of {', '.join(_PURPOSES)}")
    p = FileKeyProvider(_dir(keys))
    v = p.add(purpose)
    p.make_current(purpose, v)
    console.print(f"{purpose}: version {v} is current; run `tapshield privacy reencrypt` "
                  "to move stored values to it")


@privacy_app.command("reencrypt")
@friendly
def reencrypt_cmd(
    db: str | None = typer.Option(None, "--db", help="Database URL (default: "
                                  "$TAPSHIELD_DB_URL, else ./tapshield.db)."),
    keys: Path | None = _KEYS,
    batch: int = typer.Option(500, "--batch", min=1, help="Rows per step."),
) -> None:
    """Re-seal the vault's values with the current key version (safe while serving)."""
    from tapshield.privacy import FileKeyProvider, Tokenizer
    from tapshield.privacy.seal import Sealer
    from tapshield.privacy.vault import Vault
    from tapshield.storage import Store, default_url
    from tapshield.storage.vault import SqlVaultStore

    p = FileKeyProvider(_dir(keys))
    store = Store(db or default_url())
    vault = Vault(SqlVaultStore(store.engine), Tokenizer(p), Sealer(p))
    with console.status("re-encrypting"):
        moved = vault.reencrypt(batch=batch)
    console.print(f"{moved:,} value(s) re-sealed with seal key version {p.current('seal')}")
    _status(vault.versions())


def _status(versions: dict[int, int]) -> None:
    t = Table(title="vault rows per seal key version")
    t.add_column("version")
    t.add_column("rows", justify="right")
    for v, n in sorted(versions.items()):
        t.add_row(str(v), f"{n:,}")
    console.print(t)
