"""``tapshield keys``: API keys of the service (stored hashed; shown once)."""

from __future__ import annotations

from pathlib import Path

import typer

from tapshield.cli._app import UsageError, app, console, err_console, friendly

keys_app = typer.Typer(help="API keys of `tapshield serve`.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
@friendly
def create(
    role: str = typer.Option(..., "--role", "-r",
                             help="gateway, operator, risk, credit, partner or read-only."),
    config: Path | None = typer.Option(
        None, "--config", "-c", envvar="TAPSHIELD_CONFIG",
        help="Service config naming the keys file (default: tapshield-keys.json here)."),
    name: str = typer.Option("", "--name", help="Who or what holds the key (shown in logs)."),
    partner: list[str] = typer.Option(
        [], "--partner", help="What a partner key owns, DIM=VALUE (repeatable), e.g. "
        "channel=nfc."),
) -> None:
    """Create a key and print it once, alone on the last line (store it now)."""
    from tapshield.service.config import load_settings
    from tapshield.service.keys import create_key

    owned: dict[str, str] = {}
    for item in partner:
        dim, sep, value = item.partition("=")
        if not sep or not dim or not value:
            raise UsageError(f"--partner {item!r}: expected DIM=VALUE")
        owned[dim.strip()] = value.strip()
    settings = load_settings(config)
    key_id, key = create_key(settings.keys_file, role, name=name, partner=owned)
    _audit(settings, key_id, role, name, owned)
    err_console.print(f"created {role} key {key_id} in {settings.keys_file}; it is shown "
                      "once, below:", highlight=False)
    console.print(key, highlight=False, soft_wrap=True)


def _audit(settings: object, key_id: str, role: str, name: str, owned: dict[str, str]) -> None:
    """Put the new key on the service database's transparency log (who made it)."""
    from tapshield.service.audit import ServiceAudit, cli_actor
    from tapshield.service.runtime import migrate
    from tapshield.storage import Store

    url = settings.resolved_database_url()  # type: ignore[attr-defined]
    migrate(url)
    store = Store(url, migrate=False)
    try:
        ServiceAudit(store.engine).record("apikey.created", cli_actor(), f"apikey:{key_id}",
                                          {"role": role, "name": name, "partner": owned})
    finally:
        store.close()
