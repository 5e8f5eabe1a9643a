"""``tapshield serve``: the HTTP service a lender puts in front of its payment gateway."""

from __future__ import annotations

from pathlib import Path

import typer

from tapshield.cli._app import app, err_console, friendly


@app.command()
@friendly
def serve(
    config: Path | None = typer.Option(
        None, "--config", "-c", envvar="TAPSHIELD_CONFIG",
        help="Service config (YAML or TOML); TAPSHIELD_* environment variables override it."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=0, max=65535,
                             help="Port to listen on (0: any free port)."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=64, help="Worker processes (default: the config's, 1)."),
) -> None:
    """Serve /v1/authorize, results, channel health, incidents, silences and /metrics.

    Stops cleanly on SIGTERM: drains requests, checkpoints router health, exits 0.
    """
    from tapshield.service.config import load_settings
    from tapshield.service.server import serve as run

    settings = load_settings(config)
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    if not settings.keys_file.exists():
        err_console.print(f"no API keys yet in {settings.keys_file}: create one with "
                          f"`tapshield keys create --role gateway`", highlight=False)
    raise typer.Exit(run(settings, host=host, port=port, config_path=config))
