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


def _host_port(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise click.BadParameter("expected HOST:PORT such as 127.0.0.1:9101")
    return value


@main.command()
@click.option("--role", type=click.Choice(["api", "worker", "all"]), default="all",
              show_default=True, help="What this process runs.")
@click.option("--bind", metavar="HOST:PORT", help="Listen address (BIND).")
@click.option("--workers", type=int, metavar="N",
              help="API processes sharing the port with SO_REUSEPORT (API_WORKERS).")
@click.option("--metrics-bind", metavar="HOST:PORT", callback=_host_port,
              help="Serve GET /metrics on this address (METRICS_BIND); never on the API "
                   "port.")
@preset_option
@click.pass_context
def serve(ctx: click.Context, role: str, bind: str | None, workers: int | None,
          metrics_bind: str | None) -> None:
    """Run the API, the background worker, or both."""
    overrides = {}
    if bind is not None:
        overrides["BIND"] = bind
    if workers is not None:
        overrides["API_WORKERS"] = str(workers)
    if metrics_bind is not None:
        overrides["METRICS_BIND"] = metrics_bind
    from authnode.settings import for_role, require_secret_key

    settings = for_role(build_settings(ctx, overrides), role)

    try:
        require_secret_key(settings)
    except SettingsError as error:
        fail_setting(error)
    # One process runs the workers; only the API role fans out over several processes.
    if role == "api" and settings.api_workers > 1:
        # Every child binds METRICS_BIND too: they share the supervisor's metrics folder,
        # so whichever answers a scrape reports the sum over all of them.
        from authnode.supervisor import supervise

        sys.exit(supervise(settings, role, sys.argv))
    from authnode.runtime import run_sync

    sys.exit(run_sync(settings, role, bind=settings.bind,  # type: ignore[arg-type]
                      metrics_bind=settings.metrics_bind))


@main.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@click.option("--role", type=click.Choice(["api", "worker", "all"]), default="api",
              show_default=True, help="Show the values `serve --role ROLE` uses.")
@preset_option
@click.pass_context
def config_show(ctx: click.Context, role: str) -> None:
    """Every setting, its value (secrets masked) and where it came from."""
    from authnode.settings import describe, for_role

    settings = for_role(build_settings(ctx), role)
    rows = describe(settings)
    width = max(len(name) for name, _, _ in rows)
    value_width = min(60, max(len(value) for _, value, _ in rows))
    for name, value, source in rows:
        click.echo(f"{name:<{width}}  {value:<{value_width}}  {source}")
    _echo_connection_budget(settings)


def _echo_connection_budget(settings: Settings) -> None:
    """A section of its own after a blank line; each server is asked for at most ~2 s."""
    import anyio

    from authnode.budget import report

    lines, _ = anyio.run(report, settings)
    click.echo("")
    for line in lines:
        click.echo(line)


@main.command()
def secret() -> None:
    """Print a fresh SECRET_KEY (384 random bits, base64url)."""
    from authnode.settings import new_secret_key

    click.echo(new_secret_key())


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
    _echo_connection_budget(settings)
    sys.exit(0 if all(r["status"] == "up" for r in checks.values()) else 1)


# --------------------------------------------------------------------------- operators


def _emit(data: object, as_json: bool, human: str) -> None:
    if as_json:
        import json

        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(human)


def _run_admin(ctx: click.Context, function: Any, *args: Any, load_keys: bool = True) -> Any:
    """Open the stack, run one admin coroutine with it; a domain error (no such user…) is
    one line and exit 1."""
    import anyio

    from authnode.errors import AuthnodeError
    from authnode.settings import require_secret_key
    from authnode.stack import open_stack

    settings = build_settings(ctx)
    try:
        require_secret_key(settings)
    except SettingsError as error:
        fail_setting(error)

    async def run() -> Any:
        from authnode.operators.audit import AuditContext, bound

        with bound(AuditContext(actor="operator")):
            async with open_stack(settings, load_keys=load_keys) as stack:
                return await function(stack, *args)

    try:
        return anyio.run(run)
    except AuthnodeError as error:
        click.echo(f"authnode: {error.message}", err=True)
        sys.exit(1)
    except BaseExceptionGroup as group:  # raised from inside the stack's task group
        domain, rest = group.split(AuthnodeError)
        if domain is None or rest is not None:
            raise
        first = _leaves(domain)[0]
        click.echo(f"authnode: {first.message}", err=True)
        sys.exit(1)


def _leaves(group: BaseExceptionGroup[Any]) -> list[Any]:
    found: list[Any] = []
    for error in group.exceptions:
        found.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return found


def _with_jobs(settings: Settings, function: Any, *args: Any) -> Any:
    """Open the job app (PostgreSQL only: the job commands need no other server), run one
    admin coroutine with it."""
    import anyio

    from authnode.jobs.app import create_job_app

    async def run() -> Any:
        jobs = create_job_app(settings)
        async with jobs.open_async():
            return await function(jobs, *args)

    return anyio.run(run)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@main.group()
def users() -> None:
    """Look up, disable, enable or delete an account (operators, on the host)."""


def _user_command(action: str, summary: str) -> None:
    @users.command(action, help=summary)
    @click.argument("email")
    @json_option
    @click.pass_context
    def command(ctx: click.Context, email: str, as_json: bool) -> None:
        from authnode.admin import user_action

        user = _run_admin(ctx, user_action, email, action, load_keys=False)
        if action == "delete":
            human = f"deleted {user['email']} ({user['id']}); its sessions ended"
        elif action == "mfa-reset":
            human = (f"removed every second factor of {user['email']} ({user['id']}); "
                     "the user was emailed" if user["second_factors_removed"]
                     else f"{user['email']} ({user['id']}) had no second factor")
        else:
            state = "disabled" if user["disabled"] else "active"
            verified = "verified" if user["email_verified"] else "unverified"
            human = (f"{user['email']}  id={user['id']}  {state}, {verified}, "
                     f"{user['live_sessions']} live session(s), created {user['created_at']}")
        _emit(user, as_json, human)


_user_command("show", "Show one account.")
_user_command("disable", "Refuse logins and end every session of the account at once.")
_user_command("enable", "Allow logins again.")
_user_command("unlock", "Clear the account's lockouts (failed passwords, wrong codes).")
_user_command("delete", "Delete the account, its sessions and its links.")
_user_command("mfa-reset", "Remove every second factor (TOTP, passkeys, recovery codes) of "
                           "the account, for a user who lost them; logged, and the user is "
                           "emailed. Check who is asking first.")


@main.group("admin-keys")
def admin_keys() -> None:
    """Keys for the admin HTTP API (/v1/admin)."""


@admin_keys.command("create")
@click.option("--name", required=True, help="Who uses it; recorded as the actor of its actions.")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(["users:read", "users:write", "sessions:write", "audit:read",
                                 "webhooks:write"]))
@json_option
@click.pass_context
def admin_keys_create(ctx: click.Context, name: str, scopes: tuple[str, ...],
                      as_json: bool) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from authnode.admin import create_admin_key

    created = _run_admin(ctx, create_admin_key, name, list(scopes), load_keys=False)
    _emit(created, as_json, f"{created['key']}\n(id {created['id']}, {created['name']}: "
                            f"{' '.join(created['scopes'])}; shown once, keep it secret)")


@admin_keys.command("list")
@json_option
@click.pass_context
def admin_keys_list(ctx: click.Context, as_json: bool) -> None:
    """Every key: id, name, scopes, created, revoked (never the key itself)."""
    from authnode.admin import list_admin_keys

    rows = _run_admin(ctx, list_admin_keys, load_keys=False)
    human = "\n".join(f"{r['id']}  {r['name']}  {' '.join(r['scopes'])}  created "
                      f"{r['created_at']}" + (f"  REVOKED {r['revoked_at']}"
                                              if r["revoked_at"] else "")
                      for r in rows) or "no admin keys"
    _emit(rows, as_json, human)


@admin_keys.command("revoke")
@click.argument("key_id")
@json_option
@click.pass_context
def admin_keys_revoke(ctx: click.Context, key_id: str, as_json: bool) -> None:
    """Revoke a key: refused at once on every instance."""
    from authnode.admin import revoke_admin_key

    result = _run_admin(ctx, revoke_admin_key, key_id, load_keys=False)
    _emit(result, as_json, f"revoked {key_id}")


@main.group()
def jobs() -> None:
    """Inspect and retry background jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice(["todo", "doing", "succeeded", "failed",
                                             "cancelled", "aborted"]))
@json_option
@click.pass_context
def jobs_list(ctx: click.Context, status: str | None, as_json: bool) -> None:
    """List jobs, newest last."""
    from authnode.admin import list_jobs

    found = _with_jobs(build_settings(ctx), list_jobs, status)
    human = "\n".join(f"{j['id']:>8}  {j['status']:<9}  attempts={j['attempts']}  "
                      f"{j['task']}  ({j['queue']})" for j in found) or "no jobs"
    _emit(found, as_json, human)


@jobs.command("retry")
@click.argument("job_ids", type=int, nargs=-1)
@click.option("--all-failed", is_flag=True, help="Retry every failed job.")
@json_option
@click.pass_context
def jobs_retry(ctx: click.Context, job_ids: tuple[int, ...], all_failed: bool,
               as_json: bool) -> None:
    """Queue failed jobs again (a progress bar shows on a terminal, not when piped)."""
    from authnode.admin import failed_job_ids, retry_jobs

    settings = build_settings(ctx)
    ids = list(job_ids)
    if all_failed:
        ids += _with_jobs(settings, failed_job_ids)
    if not ids:
        raise click.UsageError("give job ids or --all-failed")
    with click.progressbar(length=len(ids), label="retrying",
                           hidden=not sys.stdout.isatty() or as_json) as bar:
        results = _with_jobs(settings, retry_jobs, ids, bar.update)
    human = "\n".join(f"job {r['id']}: {r['outcome']}"
                      + (f" as job {r['new_id']}" if "new_id" in r else "") for r in results)
    _emit(results, as_json, human)
    if any(r["outcome"] != "requeued" for r in results):
        sys.exit(1)


@main.group()
def keys() -> None:
    """Manage the token signing keys."""


@keys.command("rotate")
@json_option
@click.pass_context
def keys_rotate(ctx: click.Context, as_json: bool) -> None:
    """Start signing with a new key now. The previous key stays published for the
    access-token lifetime (plus 10 s), so tokens it signed keep working; rotating twice in
    a row stops trusting the one before it at once."""
    from authnode.admin import rotate_key

    result = _run_admin(ctx, rotate_key)
    _emit(result, as_json, f"signing with {result['kid']}; published: "
                           f"{', '.join(result['published'])}")


@keys.command("retire")
@click.argument("kid")
@json_option
@click.pass_context
def keys_retire(ctx: click.Context, kid: str, as_json: bool) -> None:
    """Stop trusting a (compromised) key: tokens it signed are refused on every instance
    within 5 s. Retiring the current key first rotates to a new one."""
    from authnode.admin import retire_key

    result = _run_admin(ctx, retire_key, kid)
    _emit(result, as_json, f"retired {result['retired']}; signing with {result['kid']}; "
                           f"every instance refuses it within "
                           f"{result['everywhere_within_s']:g} s")


@keys.command("list")
@json_option
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """Every stored key: current, previous (and until when), retired, expired or refused."""
    from authnode.admin import list_keys

    rows = _run_admin(ctx, list_keys, load_keys=False)
    human = "\n".join(
        f"{row['kid']}  generation={row['generation']}  {row['status']}"
        + "".join(f"  {name}={row[name]}" for name in ("trusted_until", "retired_at",
                                                         "detail") if name in row)
        + f"  created {row['created_at']}" for row in rows) or "no keys"
    _emit(rows, as_json, human)


# --------------------------------------------------------------------------- capacity


@main.command()
@click.option("--users", type=click.IntRange(min=1), required=True, help="Registered users.")
@click.option("--daily-active-share", type=click.FloatRange(0, 1), default=0.2,
              show_default=True, help="Share of users active on a day.")
@click.option("--logins-per-day", type=click.FloatRange(min=0), default=1.0,
              show_default=True, help="Logins per active user per day.")
@click.option("--active-hours", type=click.FloatRange(0, 24), default=1.0, show_default=True,
              help="Hours an active user has a client open per day.")
@click.option("--refreshes-per-hour", type=click.FloatRange(min=0), default=4.0,
              show_default=True, help="Token refreshes per active hour (15 min tokens: 4).")
@click.option("--profile-reads-per-minute", type=click.FloatRange(min=0), default=1.0,
              show_default=True, help="GET /v1/users/me per active minute.")
@click.option("--emails-per-month", type=click.FloatRange(min=0), default=1.0,
              show_default=True, help="Emails (verification, reset) per user per month.")
@click.option("--peak-to-average", type=click.FloatRange(min=1), default=3.0,
              show_default=True, help="Busiest second over the day's average.")
@click.option("--mongodb-max-connections", type=click.IntRange(min=1), default=1500,
              show_default=True, help="Connections your MongoDB accepts.")
@click.option("--postgres-max-connections", type=click.IntRange(min=1), default=100,
              show_default=True, help="PostgreSQL max_connections.")
@click.option("--postgres-pool-size", type=click.IntRange(min=1), default=10,
              show_default=True, help="POSTGRES_POOL_SIZE per process.")
@click.option("--costs", "costs_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A bench results file (bench/results/latest.json) for the CPU costs; "
                   "default: the copy shipped with authnode.")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def capacity(users: int, daily_active_share: float, logins_per_day: float,
             active_hours: float, refreshes_per_hour: float, profile_reads_per_minute: float,
             emails_per_month: float, peak_to_average: float, mongodb_max_connections: int,
             postgres_max_connections: int, postgres_pool_size: int, costs_file: Path | None,
             output: str) -> None:
    """How many processes, cores and connections USERS need, from measured costs."""
    import json

    from authnode.capacity import Usage, as_table, costs_from_bench, plan, shipped_costs

    costs = shipped_costs()
    if costs_file is not None:
        try:
            bench = json.loads(costs_file.read_text(encoding="utf-8"))
            costs = costs_from_bench(bench, costs, str(costs_file))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise click.BadParameter(f"not a bench results file: {error!r}",
                                     param_hint="--costs") from None
    usage = Usage(users=users, daily_active_share=daily_active_share,
                  logins_per_active_user_per_day=logins_per_day,
                  active_hours_per_day=active_hours,
                  refreshes_per_active_hour=refreshes_per_hour,
                  profile_reads_per_minute=profile_reads_per_minute,
                  emails_per_user_per_month=emails_per_month,
                  peak_to_average=peak_to_average,
                  mongodb_max_connections=mongodb_max_connections,
                  postgres_max_connections=postgres_max_connections,
                  postgres_pool_size=postgres_pool_size)
    result = plan(usage, costs)
    if output == "json":
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(as_table(result))
