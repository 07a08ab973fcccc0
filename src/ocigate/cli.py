"""Command line: ``ocigate serve | fsck | validate | events | config check | config schema``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import __version__
from .config import Settings, load_settings

APP_FACTORY = "ocigate.api.app:app_from_environment"


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        key: getattr(args, key, None) for key in ("listen", "data_dir", "workers", "log_level")
    }
    if getattr(args, "upstream", None):
        overrides["upstreams"] = [{"url": args.upstream}]
    return load_settings(args.config, **overrides)


def _serve(args: argparse.Namespace) -> int:
    from .api.app import configure_logging

    settings = _settings_from(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(settings.log_level)
    # Workers are separate processes: they rebuild the validated settings from the environment.
    os.environ["OCIGATE_RESOLVED_SETTINGS"] = settings.model_dump_json()
    if settings.server == "granian":
        _serve_granian(settings)
    elif settings.server == "builtin":
        _serve_builtin(settings)
    else:
        _serve_uvicorn(settings)
    return 0


def _serve_builtin(settings: Settings) -> None:
    from .api.app import app_from_environment
    from .server.limits import limits_from
    from .server.workers import serve

    serve(
        app_from_environment, settings.host, settings.port, settings.workers, limits_from(settings)
    )


def _serve_granian(settings: Settings) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    Granian(
        APP_FACTORY,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        loop=Loops.uvloop,
        websockets=False,
        factory=True,
        log_enabled=False,  # ocigate writes its own structured request log
        respawn_failed_workers=True,
    ).serve()


def _serve_uvicorn(settings: Settings) -> None:
    import uvicorn

    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # ocigate writes its own structured request log
        log_level="warning",
        server_header=False,
        proxy_headers=False,  # no proxy in front by default; saves a middleware per request
        timeout_graceful_shutdown=10,
    )


def _fsck(args: argparse.Namespace) -> int:
    from .fsck import fsck

    settings = _settings_from(args)
    problems = fsck(settings.data_dir)
    for problem in problems:
        print(problem)
    print(f"fsck {settings.data_dir}: {len(problems)} problem(s)")
    return 1 if problems else 0


def _gc(args: argparse.Namespace) -> int:
    from .store.embedded import EmbeddedStore

    settings = _settings_from(args)
    # Safe beside a running server: the sweep holds the store's GC lock, which commits share.
    store = EmbeddedStore(settings.data_dir)
    report = asyncio.run(store.collect_garbage())
    print(
        f"gc {settings.data_dir}: kept {report.blobs_kept} blobs, removed "
        f"{report.blobs_removed} ({report.bytes_freed} bytes)"
    )
    return 0


def _config_check(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    print(settings.model_dump_json(indent=2))
    return 0


def _config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(Settings.model_json_schema(), indent=2))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .layers.offline import validate_files

    settings = load_settings(args.config)
    return validate_files(args.files, settings.artifact_types, args.type, args.media_type)


def _events(args: argparse.Namespace) -> int:
    from .layers import events_cli

    data_dir = _settings_from(args).data_dir
    if args.events_command == "status":
        return events_cli.status(data_dir)
    if args.events_command == "list":
        return events_cli.list_events(data_dir, args.dead, args.limit, args.full)
    return events_cli.replay(data_dir, args.ids)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocigate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ocigate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, run: Any, *flags: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", type=Path, help="YAML configuration file")
        if "data" in flags:
            sub.add_argument("--data-dir", type=Path, help="data directory")
        if "serve" in flags:
            sub.add_argument("--listen", help="HOST:PORT (default 0.0.0.0:5000)")
            sub.add_argument("--workers", type=int, help="worker processes (default 1)")
            sub.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
            sub.add_argument(
                "--upstream",
                metavar="URL",
                help="gateway mode: forward every repository to the registry at URL"
                " (several upstreams, credentials: `upstreams` in the config file)",
            )
        sub.set_defaults(run=run)
        return sub

    command("serve", "serve the registry", _serve, "data", "serve")
    command("fsck", "verify every blob and metadata reference", _fsck, "data")
    command("gc", "delete blob files no repository or manifest references", _gc, "data")
    validate = command("validate", "check artifact payload files offline", _validate)
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--type", help="artifact type name (default: any with a schema)")
    validate.add_argument("--media-type", help="which of the type's schemas (when several)")
    events = command("events", "the event outbox: status, list, replay", _events, "data")
    events_commands = events.add_subparsers(dest="events_command", required=True)
    events_commands.add_parser("status", help="events recorded and deliveries per webhook")
    listing = events_commands.add_parser("list", help="recent events and their deliveries")
    listing.add_argument("--dead", action="store_true", help="only dead-lettered deliveries")
    listing.add_argument("--limit", type=int, default=100, help="most rows shown (default 100)")
    listing.add_argument("--full", action="store_true", help="print each CloudEvent too")
    again = events_commands.add_parser("replay", help="deliver events again (id or seq)")
    again.add_argument("ids", nargs="+", metavar="ID")
    config = commands.add_parser("config", help="configuration tools").add_subparsers(
        dest="config_command", required=True
    )
    check = config.add_parser("check", help="validate a configuration and print it resolved")
    check.add_argument("config", type=Path)
    check.set_defaults(run=_config_check)
    schema = config.add_parser("schema", help="print the configuration's JSON Schema")
    schema.set_defaults(run=_config_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ValidationError as error:
        for problem in error.errors():
            key = ".".join(str(part) for part in problem["loc"])
            print(f"configuration error: {key}: {problem['msg']}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
