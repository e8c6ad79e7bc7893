"""The ``authnode`` command: parse arguments, build Settings once, hand over.

Heavy modules (Quart, pymongo, procrastinate) are imported inside the commands so that
``authnode --help`` stays instant.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import click

from authnode.settings import PRESETS, Settings, SettingsError, load_settings

EXIT_BAD_SETTING = 2


def fail_setting(error: SettingsError) -> NoReturn:
    click.echo(f"authnode: invalid setting {error}", err=True)
    sys.exit(EXIT_BAD_SETTING)


def build_settings(ctx: click.Context, overrides: Mapping[str, str] | None = None) -> Settings:
    from authnode.tuning import read_host_resources

    options: dict[str, Any] = ctx.obj
    try:
        return load_settings(os.environ, host=read_host_resources(),
                             preset=options.get("preset"), env_file=options.get("env_file"),
                             overrides=overrides)
    except SettingsError as error:
        fail_setting(error)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", metavar="|".join(PRESETS),
              help="Load config/<preset>.env below the environment (AUTHNODE_PRESET).")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path(".env"), show_default=True, help="Optional KEY=VALUE file.")
@click.pass_context
def main(ctx: click.Context, preset: str | None, env_file: Path) -> None:
    """authnode: email-and-password authentication that scales by adding hosts."""
    ctx.obj = {"preset": preset, "env_file": env_file}


def preset_option(command: Any) -> Any:
    """``--preset`` accepted after a subcommand too (``authnode serve --preset growth``)."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value:
            ctx.find_root().obj["preset"] = value

    return click.option("--preset", metavar="|".join(PRESETS), expose_value=False,
                        callback=remember, help="Load config/<preset>.env.")(command)


@main.command()
@click.option("--role", type=click.Choice(["api", "worker", "all"]), default="all",
              show_default=True, help="What this process runs.")
@click.option("--bind", metavar="HOST:PORT", help="Listen address (BIND).")
@click.option("--workers", type=int, metavar="N",
              help="API processes sharing the port with SO_REUSEPORT (API_WORKERS).")
@preset_option
@click.pass_context
def serve(ctx: click.Context, role: str, bind: str | None, workers: int | None) -> None:
    """Run the API, the background worker, or both."""
    overrides = {}
    if bind is not None:
        overrides["BIND"] = bind
    if workers is not None:
        overrides["API_WORKERS"] = str(workers)
    settings = build_settings(ctx, overrides)
    from authnode.settings import require_secret_key

    try:
        require_secret_key(settings)
    except SettingsError as error:
        fail_setting(error)
    # One process runs the workers; only the API role fans out over several processes.
    if role == "api" and settings.api_workers > 1:
        from authnode.supervisor import supervise

        sys.exit(supervise(settings, role, sys.argv))
    from authnode.runtime import run_sync

    sys.exit(run_sync(settings, role, bind=settings.bind))  # type: ignore[arg-type]


@main.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@preset_option
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Every setting, its value (secrets masked) and where it came from."""
    from authnode.settings import describe

    settings = build_settings(ctx)
    rows = describe(settings)
    width = max(len(name) for name, _, _ in rows)
    value_width = min(60, max(len(value) for _, value, _ in rows))
    for name, value, source in rows:
        click.echo(f"{name:<{width}}  {value:<{value_width}}  {source}")


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create MongoDB indexes and the job-queue schema (safe to run again)."""
    import anyio

    from authnode.admin import migrate as run_migrate

    settings = build_settings(ctx)
    for line in anyio.run(run_migrate, settings):
        click.echo(line)


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Connect to every dependency and report each; exit 1 if any is unreachable."""
    import anyio

    from authnode.admin import check_dependencies

    settings = build_settings(ctx)
    checks = anyio.run(check_dependencies, settings)
    for name, result in checks.items():
        detail = f" ({result['error']})" if result.get("error") else ""
        click.echo(f"{name:<11} {result['status']}{detail}")
    sys.exit(0 if all(r["status"] == "up" for r in checks.values()) else 1)
