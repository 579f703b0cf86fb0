"""`storyloop run`, `storyloop check`, `storyloop console` and `storyloop export`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from bot import logs, runloop
from bot.checks import run_checks
from bot.config import Settings, SettingsError, load_settings
from bot.localredis import LocalRedisError, start_local_redis
from bot.runtime import ReplicaFailed, StartupError, serve


def _settings() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        print(
            "\nSet these in the environment or in a .env file (see .env.example).", file=sys.stderr
        )
        raise SystemExit(2) from None
    # Settings own the configuration now. Bolt reads SLACK_* variables by itself (and would
    # switch on its OAuth flow if SLACK_CLIENT_ID/SECRET were set): take them out of its reach.
    for name in [n for n in os.environ if n.startswith("SLACK_")]:
        del os.environ[name]
    return settings


def run() -> int:
    settings = _settings()
    logs.setup(settings.log_level, settings.secrets(), settings.log_format)
    proc = None
    try:
        url = settings.redis_url
        if url is None:
            url, proc = start_local_redis(settings.data_dir)
        runloop.run(serve(settings, url), settings.event_loop)
    except (StartupError, LocalRedisError) as exc:
        print(f"Storyloop can't start: {exc}", file=sys.stderr)
        return 1
    except ReplicaFailed as exc:
        print(f"Storyloop stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


def check() -> int:
    settings = _settings()
    logs.setup("WARNING", settings.secrets())
    return asyncio.run(run_checks(settings))


def console(redis_url: str | None = None) -> int:
    """Try Storyloop without Slack: the real app with a terminal in place of Slack."""
    from bot.console.main import run_console  # noqa: PLC0415 - only this command needs it

    return run_console(redis_url)


def export(team: str | None, session: str | None, out: str | None, redis_url: str | None) -> int:
    """Write one session, or all of a workspace's, as JSON (bot/export.py)."""
    from bot.export import write_export  # noqa: PLC0415 - only this command needs it

    if not team:
        print("storyloop export needs --team T (the workspace id).", file=sys.stderr)
        return 2
    url = redis_url or _settings().redis_url
    if url is None:
        print("Set REDIS_URL or pass --redis-url: export reads the app's Redis.", file=sys.stderr)
        return 2
    return write_export(url, team, session, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="storyloop", description=__doc__)
    parser.add_argument(
        "command", choices=["run", "check", "console", "export"], nargs="?", default="run"
    )
    parser.add_argument(
        "--redis-url", help="console and export: use this Redis (export: else REDIS_URL)"
    )
    parser.add_argument("--team", help="export: the workspace id (T…)")
    parser.add_argument("--session", help="export: one session's id (default: all of them)")
    parser.add_argument("--out", help="export: the file to write (default: standard output)")
    args = parser.parse_args(argv)
    if args.command == "console":
        return console(args.redis_url)
    if args.command == "export":
        return export(args.team, args.session, args.out, args.redis_url)
    return run() if args.command == "run" else check()


if __name__ == "__main__":
    raise SystemExit(main())
