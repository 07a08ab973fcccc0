"""Command line: ocigate serve | fsck | gc | quota | migrate | mirror | db | validate | events |
config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from . import __version__
from .config import Settings, load_settings, masked
from .config_env import RESOLVED_SETTINGS
from .durations import parse_duration
from .startup import StartupError, check_files, exposure_warning, listening_line
from .store_config import EmbeddedStoreConfig, ObjectsStoreConfig, StoreConfig

if TYPE_CHECKING:
    from .events.outbox import Outbox
    from .store.core.gc import GcReport
    from .store.core.registry import RegistryOverPorts

APP_FACTORY = "ocigate.assemble:app_from_environment"
# Each command's one line, in `ocigate --help` and atop its own --help.
COMMANDS = {
    "serve": "serve the registry (embedded store, gateway or pull-through cache)",
    "fsck": "re-hash every blob and check every reference of a store (embedded, objects)",
    "gc": "apply retention, delete blobs no manifest references (--dry-run: list them)",
    "quota": "each repository's storage use against its quota (REPO-GLOB: only those)",
    "migrate": "copy an embedded store into the store of another configuration (--to)",
    "mirror": "copy repositories, tags, indexes and referrers from one registry to another",
    "db migrate": "create or upgrade the objects store's database schema",
    "db status": "the objects store's schema migrations, applied and pending",
    "validate": "check artifact payload files offline against artifact types",
    "events status": "events recorded and deliveries per webhook",
    "events list": "recent events and their deliveries",
    "events replay": "deliver events again (id or seq)",
    "config check": "validate a configuration file and print it resolved, secrets masked",
    "config schema": "print the configuration's JSON Schema",
}


def _overview() -> str:
    lines = [f"  {name:<15} {text}" for name, text in COMMANDS.items()]
    return "An OCI Distribution v1.1 registry and gateway.\n\ncommands:\n" + "\n".join(lines)


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        key: getattr(args, key, None) for key in ("listen", "data_dir", "workers", "log_level")
    }
    if getattr(args, "upstream", None):
        overrides["upstreams"] = [{"url": args.upstream}]
    if getattr(args, "tls_cert", None) or getattr(args, "tls_key", None):
        tls = {"cert_file": args.tls_cert, "key_file": args.tls_key}
        overrides["tls"] = tls | (
            {"client_ca_file": args.tls_client_ca} if args.tls_client_ca else {}
        )
    settings = load_settings(args.config, **overrides)
    data_dir = settings.store.data_dir
    embedded = isinstance(settings.store, EmbeddedStoreConfig)
    if getattr(args, "needs_store", False) and embedded and not (data_dir / "meta.db").exists():
        # Opening one would create an empty store and report on nothing.
        raise StartupError(
            f"{data_dir}: no ocigate store here (no meta.db); check --data-dir or"
            " data_dir in the configuration"
        )
    return settings


def _require_server(name: str) -> None:
    if name != "builtin" and importlib.util.find_spec(name) is None:
        raise StartupError(
            f"server: {name} is not installed; install it with: pip install 'ocigate[{name}]'"
        )


def _serve(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    metrics_dir = _metrics_dir()  # before prometheus_client is imported, which reads it
    try:
        return _serve_with(settings)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir() -> str:
    """A fresh directory where the workers' metrics are written and summed (multi-process
    mode); a previous run's is never reused, so counters start at zero."""
    path = tempfile.mkdtemp(prefix="ocigate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _serve_with(settings: Settings) -> int:
    from .logformat import configure_logging

    check_files(settings)
    _require_server(settings.server)
    settings.store.data_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(settings.log_level)
    log = logging.getLogger("ocigate")
    log.info(listening_line(settings))
    warning = exposure_warning(settings)
    if warning is not None:
        log.warning(warning)
    # Workers are separate processes: they rebuild the validated settings from the environment.
    os.environ[RESOLVED_SETTINGS] = settings.model_dump_json()
    if settings.server == "builtin":
        _serve_builtin(settings)
    else:
        _serve_alternative(settings)
    return 0


def _serve_builtin(settings: Settings) -> None:
    from .assemble import app_from_environment, server_limits
    from .metrics import worker_ended
    from .server.limits import connection_cap
    from .server.workers import Listener, serve

    cap = connection_cap(settings.rate_limits.max_connections)
    listener = Listener(settings.tls, cap, server_limits(settings))
    serve(
        app_from_environment,
        settings.host,
        settings.port,
        settings.workers,
        listener,
        worker_ended,
    )


def _serve_alternative(settings: Settings) -> None:
    from .server.granian_server import serve_granian
    from .server.launch import Launch
    from .server.limits import connection_cap
    from .server.uvicorn_server import serve_uvicorn

    serve = serve_granian if settings.server == "granian" else serve_uvicorn
    cap = connection_cap(settings.rate_limits.max_connections)
    serve(Launch(APP_FACTORY, settings.host, settings.port, settings.workers, settings.tls, cap))


def _fsck(args: argparse.Namespace) -> int:
    config = _settings_from(args).store
    if isinstance(config, ObjectsStoreConfig):
        problems = asyncio.run(_fsck_objects(config))
        where = _where(config)
    else:
        from .store.embedded.fsck import fsck

        problems = fsck(config.data_dir)
        where = str(config.data_dir)
    for problem in problems:
        print(problem)
    print(f"fsck {where}: {len(problems)} problem(s)")
    return 1 if problems else 0


async def _fsck_objects(config: ObjectsStoreConfig) -> list[str]:
    from .store.objects.fsck import check
    from .store.objects.store import ObjectsStore

    async with _opened(config, migrate=False) as store:
        assert isinstance(store, ObjectsStore)
        report = await check(store)
    for line in report.info:
        print(line)
    return report.problems


def _gc(args: argparse.Namespace) -> int:
    from .assemble import with_events
    from .store.core.retention_run import Retention

    settings = _settings_from(args)
    config = _holding_config(settings, "gc", "gc is")
    grace = config.gc_grace if args.grace is None else parse_duration(args.grace)

    # Safe beside running servers: the sweep holds the store's GC lock, which commits share
    # (a file lock for the embedded store, a PostgreSQL advisory lock for objects).
    # Retention deletes through the events layer: its events reach the store's outbox, which
    # the servers deliver.
    async def collect() -> GcReport:
        async with _opened(config) as store:
            retention = Retention(
                settings.retention, with_events(settings, store, store.meta, None)
            )
            return await store.collect_garbage(grace, dry_run=args.dry_run, retention=retention)

    report = asyncio.run(collect())
    verb = "would delete" if report.dry_run else "deleted"
    for deletion in report.retention:
        print(f"{verb} {deletion}")
    for item in report.removed:
        print(f"{verb} {item.digest} {item.size} bytes: {item.reason}")
    summary = report.summary()
    print(
        f"gc {_where(config)}{' (dry run)' if report.dry_run else ''}: {verb}"
        f" {report.blobs_removed} blobs, {report.bytes_freed} bytes freed;"
        f" kept {report.blobs_kept} blobs; retention {verb} {summary['tags_deleted']} tags,"
        f" {summary['manifests_deleted']} manifests"
    )
    return 0


def _quota(args: argparse.Namespace) -> int:
    from .quota_table import usage_table

    settings = _settings_from(args)
    config = _holding_config(settings, "quota", "quotas are")

    async def table() -> str:
        async with _opened(config) as store:
            return await usage_table(store.meta, settings.quotas, args.glob)

    print(asyncio.run(table()))
    return 0


def _where(config: EmbeddedStoreConfig | ObjectsStoreConfig) -> str:
    if isinstance(config, EmbeddedStoreConfig):
        return str(config.data_dir)
    return f"bucket {config.s3.bucket}"


@contextlib.asynccontextmanager
async def _opened(
    config: EmbeddedStoreConfig | ObjectsStoreConfig, *, migrate: bool | None = None
) -> AsyncIterator[RegistryOverPorts]:
    """The store of ``config`` built as ``serve`` builds it (its background jobs not run),
    open, closed after the block; ``migrate`` overrides ``database.migrate``."""
    from .assemble import embedded_store, objects_store

    store: RegistryOverPorts
    if isinstance(config, EmbeddedStoreConfig):
        store = embedded_store(config, [])
    else:
        if migrate is not None:
            database = config.database.model_copy(update={"migrate": migrate})
            config = config.model_copy(update={"database": database})
        objects = objects_store(config, [])
        await objects.open()
        store = objects
    try:
        yield store
    finally:
        await store.close()


def _holding_config(
    settings: Settings, command: str, subject: str
) -> EmbeddedStoreConfig | ObjectsStoreConfig:
    """The store section of a command over what the store holds: kind embedded or objects."""
    config = settings.store
    if not isinstance(config, EmbeddedStoreConfig | ObjectsStoreConfig):
        raise StartupError(
            f"{command}: the store is kind {config.kind}; {subject} for kinds embedded and objects"
        )
    return config


def _objects_config(args: argparse.Namespace, command: str) -> ObjectsStoreConfig:
    config = _settings_from(args).store
    if not isinstance(config, ObjectsStoreConfig):
        raise StartupError(f"{command}: the store is kind {config.kind}; this is for kind objects")
    return config


def _db(args: argparse.Namespace) -> int:
    from .store.postgres.database import Database
    from .store.postgres.migrate import applied, migrate, pending

    config = _objects_config(args, f"db {args.db_command}")
    url = config.database.url

    async def run() -> int:
        db = await Database.connect(url, pool_size=1)
        try:
            if args.db_command == "migrate":
                done = await migrate(db)
                for name in done:
                    print(f"applied {name}")
                print(f"db {db.where}: {len(done)} migration(s) applied, schema up to date")
                return 0
            for name in await applied(db):
                print(f"applied {name}")
            waiting = await pending(db)
            for name in waiting:
                print(f"pending {name}")
            print(f"db {db.where}: {len(waiting)} migration(s) pending")
            return 1 if waiting else 0
        finally:
            await db.close()

    return asyncio.run(run())


def _migrate(args: argparse.Namespace) -> int:
    from .migrate import copy_store
    from .store.embedded import EmbeddedStore

    source = _settings_from(args).store
    if not isinstance(source, EmbeddedStoreConfig):
        raise StartupError(f"migrate: the source is kind {source.kind}; it must be embedded")
    dest = load_settings(args.to).store
    if not isinstance(dest, EmbeddedStoreConfig | ObjectsStoreConfig):
        raise StartupError(f"migrate --to: the store is kind {dest.kind}; embedded or objects")
    if (
        isinstance(dest, EmbeddedStoreConfig)
        and dest.data_dir.resolve() == source.data_dir.resolve()
    ):
        raise StartupError("migrate: the source and the destination are the same store")

    async def run() -> str:
        origin = EmbeddedStore(source.data_dir)
        try:
            async with _opened(dest) as target:
                return (await copy_store(origin, target)).line()
        finally:
            await origin.close()

    print(f"migrated {source.data_dir} to {_where(dest)}: {asyncio.run(run())}")
    return 0


def _mirror(args: argparse.Namespace) -> int:
    from .mirror.command import Request, mirror

    return mirror(
        Request(
            args.source,
            args.dest,
            tuple(args.repo),
            args.tags,
            args.platform,
            args.referrers,
            args.dry_run,
            args.jobs,
            args.src_creds,
            args.dest_creds,
            not args.insecure,
        )
    )


def _config_check(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    check_files(settings)
    print(json.dumps(masked(settings.model_dump(mode="json")), indent=2))
    return 0


def _config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(Settings.model_json_schema(), indent=2))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .layers.offline import validate_files

    settings = load_settings(args.config)
    return validate_files(args.files, settings.artifact_types, args.type, args.media_type)


def _events(args: argparse.Namespace) -> int:
    from .events import cli as events_cli

    with _outbox(_settings_from(args).store) as outbox:
        if args.events_command == "status":
            return events_cli.status(outbox)
        if args.events_command == "list":
            return events_cli.list_events(outbox, args.dead, args.limit, args.full)
        return events_cli.replay(outbox, args.ids)


@contextlib.contextmanager
def _outbox(config: StoreConfig) -> Iterator[Outbox]:
    """The store's event outbox, open for the block. PostgreSQL's is driven from a loop in a
    thread of its own: the ``Outbox`` protocol is synchronous."""
    if not isinstance(config, ObjectsStoreConfig):
        from .events.database import open_outbox

        local = open_outbox(config.data_dir)
        try:
            yield local
        finally:
            local.close()
        return
    from .store.postgres.database import Database
    from .store.postgres.outbox import PostgresOutbox

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="outbox", daemon=True)
    thread.start()
    try:
        opening = Database.connect(config.database.url, pool_size=1)
        db = asyncio.run_coroutine_threadsafe(opening, loop).result()
        try:
            yield PostgresOutbox(db)
        finally:
            asyncio.run_coroutine_threadsafe(db.close(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _options(parser: argparse.ArgumentParser, which: str, default: Any) -> None:
    if which in ("config", "store"):
        parser.add_argument("--config", type=Path, default=default, help="YAML configuration")
    if which == "store":
        parser.add_argument("--data-dir", type=Path, default=default, help="data directory")


def _mirror_options(mirror: argparse.ArgumentParser) -> None:
    where = "[http://|https://]HOST[:PORT][/REPOSITORY-PREFIX] (https when no scheme)"
    mirror.add_argument("source", metavar="SRC", help=f"the registry copied from: {where}")
    mirror.add_argument("dest", metavar="DST", help="the registry copied to, the same form")
    mirror.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="NAME|GLOB",
        help="a repository under SRC's prefix (repeatable); a glob lists SRC's _catalog;"
        " default: every repository of the catalog",
    )
    mirror.add_argument("--tags", metavar="REGEX", help="copy only tags matching REGEX in full")
    platforms = mirror.add_mutually_exclusive_group()
    platforms.add_argument(
        "--all-platforms",
        action="store_true",
        help="copy indexes whole, byte-exact (the default)",
    )
    platforms.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="copy only that platform's image of an index, tagged in place of the index",
    )
    mirror.add_argument(
        "--referrers", action="store_true", help="copy referrers (signatures, SBOMs) too"
    )
    mirror.add_argument("--dry-run", action="store_true", help="say what would be copied")
    mirror.add_argument("--jobs", type=int, default=4, help="parallel transfers (default 4)")
    mirror.add_argument(
        "--src-creds", metavar="USER:PASS", help="SRC credentials (or MIRROR_SRC_CREDS)"
    )
    mirror.add_argument(
        "--dest-creds", metavar="USER:PASS", help="DST credentials (or MIRROR_DEST_CREDS)"
    )
    mirror.add_argument(
        "--insecure", action="store_true", help="do not verify the registries' TLS certificates"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocigate",
        description=_overview(),
        epilog="`ocigate COMMAND --help` shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ocigate {__version__}")
    # The overview lists the commands, one line each: argparse's own list would repeat them.
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of the commands above"
    )

    def command(
        group: Any, name: str, run: Any, options: str = "store", default: Any = None
    ) -> argparse.ArgumentParser:
        # `name` may be "events status": the parser is "status", its line in COMMANDS the whole.
        description = COMMANDS.get(name)
        sub: argparse.ArgumentParser = group.add_parser(name.split()[-1], description=description)
        _options(sub, options, default)
        sub.set_defaults(run=run)
        return sub

    serve = command(commands, "serve", _serve)
    serve.add_argument("--listen", help="HOST:PORT (default 0.0.0.0:5000)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--upstream",
        metavar="URL",
        help="gateway mode: forward every repository to the registry at URL"
        " (several upstreams, credentials: upstreams in the config file)",
    )
    serve.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS: PEM chain")
    serve.add_argument("--tls-key", type=Path, metavar="FILE", help="its PEM private key")
    serve.add_argument(
        "--tls-client-ca", type=Path, metavar="FILE", help="require client certificates"
    )
    command(commands, "fsck", _fsck).set_defaults(needs_store=True)
    gc = command(commands, "gc", _gc)
    gc.set_defaults(needs_store=True)
    gc.add_argument(
        "--grace",
        metavar="DURATION",
        help="spare unreferenced blobs younger than this (e.g. 0, 90s, 30m, 1h; default:"
        " gc_grace, 1h): pushes upload layers before their manifest",
    )
    gc.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted, delete nothing"
    )
    quota = command(commands, "quota", _quota)
    quota.set_defaults(needs_store=True)
    quota.add_argument(
        "glob", nargs="?", default="**", metavar="REPO-GLOB", help="repositories shown (default **)"
    )
    migrate = command(commands, "migrate", _migrate)
    migrate.set_defaults(needs_store=True)
    migrate.add_argument(
        "--to", type=Path, required=True, metavar="CONFIG", help="the destination's configuration"
    )
    _mirror_options(command(commands, "mirror", _mirror, "none"))
    db = commands.add_parser("db", description="the objects store's database")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    for name in ("migrate", "status"):
        command(db_commands, f"db {name}", _db)
    validate = command(commands, "validate", _validate, "config")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--type", help="artifact type name (default: any with a schema)")
    validate.add_argument("--media-type", help="which of the type's schemas (when several)")
    events = command(commands, "events", _events)
    events_commands = events.add_subparsers(dest="events_command", required=True)
    # Also after the subcommand (`events status --data-dir D`); SUPPRESS keeps a value given
    # before it.
    for name in ("status", "list", "replay"):
        command(events_commands, f"events {name}", _events, default=argparse.SUPPRESS)
    listing = events_commands.choices["list"]
    listing.add_argument("--dead", action="store_true", help="only dead-lettered deliveries")
    listing.add_argument("--limit", type=int, default=100, help="most rows shown (default 100)")
    listing.add_argument("--full", action="store_true", help="print each CloudEvent too")
    events_commands.choices["replay"].add_argument("ids", nargs="+", metavar="ID")
    config = commands.add_parser("config", description="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    command(config_commands, "config check", _config_check, "none").add_argument(
        "config", type=Path
    )
    command(config_commands, "config schema", _config_schema, "none")
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
    except (OSError, ValueError, StartupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
