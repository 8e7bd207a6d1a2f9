"""``python -m wpclone.steps <step> [args]``: the entry point of the toolbox image and the local runtime.

Each step's module is imported only when that step runs: a step is a process of its own on a clone's critical
path, and the backup steps' imports (archives, HTTP fetching) cost a copy ~0.5 s of start-up.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from wpclone.errors import ConfigError, StepError, driver_error_sentence
from wpclone.steps.common import die_with_parent, emit_result, sentence, setup_logging

log = logging.getLogger("wpclone.steps")
JSON_HELP = "accepted for clarity; the JSON result is always the last stdout line"


class _Parser(argparse.ArgumentParser):
    """Usage errors become one sentence (exit 2) instead of argparse's usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(sentence(f"{self.prog}: {message}"))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wpclone.steps", description=__doc__)
    sub = parser.add_subparsers(dest="step", required=True, parser_class=_Parser)

    db = sub.add_parser(
        "copy-database",
        help="dump the source database, rewrite URLs, load the target, verify",
        description="Source and target come from SOURCE_DB_* and TARGET_DB_* "
        "(HOST, PORT, USER, PASSWORD or PASSWORD_FILE, NAME; for TLS: SSL_MODE, SSL_CA, SSL_CERT, SSL_KEY).",
    )
    db.add_argument(
        "urls",
        nargs="+",
        metavar="OLD NEW",
        help="URL pairs: OLD NEW [OLD NEW ...]; a pair of site URLs (http(s)://host[:port]) covers every "
        "form of OLD where its host ends, any other pair is replaced as given",
    )
    db.add_argument(
        "--aliases",
        default="",
        metavar="A,B",
        help="the source's other site URLs (comma-separated, may be empty): each becomes a site pair to the "
        "first pair's NEW",
    )
    db.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="N",
        help="the dump path: load over N connections from one consistent dump (1-8, default 2)",
    )
    db.add_argument(
        "--client-load",
        action="store_true",
        help="load with the mariadb client instead (automatic for sources with views or triggers)",
    )
    db.add_argument(
        "--copy-mode",
        default="everything",
        choices=("everything", "database", "files"),
        help="files: copy WordPress's content tables (posts, comments, terms, links and their meta) as "
        "structure only; the site's settings and users come along (the clone's copy mode)",
    )
    db.add_argument(
        "--copy-path",
        default="auto",
        choices=("auto", "dump", "same-server"),  # copy_database.COPY_PATHS (imported only when it runs)
        help="auto (default): copy on the server when source and target share host and port and the target's "
        "login may read the source (docs/same-server-copy.md), else dump | rewrite | load; dump or "
        "same-server insist",
    )
    db.add_argument("--table-prefix", default="wp_", help="the source's table prefix (default wp_)")
    db.add_argument("--json", action="store_true", help=JSON_HELP)

    content = sub.add_parser(
        "copy-content",
        help="copy wp-content: streamed, resumable, permissions and mtimes kept",
        description="Directories default to SOURCE_CONTENT_DIR and TARGET_CONTENT_DIR.",
    )
    content.add_argument("src", nargs="?", help="source directory (default: $SOURCE_CONTENT_DIR)")
    content.add_argument("dst", nargs="?", help="target directory (default: $TARGET_CONTENT_DIR)")
    content.add_argument("--workers", type=int, default=None, help="parallel file copies (default 4)")
    content.add_argument(
        "--copy-mode",
        default="everything",
        help="everything (default) or files: all of wp-content; database: leave uploads/ empty "
        "(the clone's copy mode)",
    )
    content.add_argument("--json", action="store_true", help=JSON_HELP)

    backup = sub.add_parser(
        "backup-clone",
        help="archive a clone's database and wp-content into the backup directory",
        description="The clone comes from SOURCE_DB_* and SOURCE_CONTENT_DIR; the archive goes to "
        "$WPCLONE_BACKUP_DIR/<clone_id>/.",
    )
    backup.add_argument("clone_id")
    backup.add_argument("site_url", help="the clone's URL, recorded in the manifest")
    backup.add_argument("--table-prefix", default="wp_")
    backup.add_argument("--json", action="store_true", help=JSON_HELP)

    restore = sub.add_parser(
        "restore-backup",
        help="fetch and verify a backup, load it into a fresh database and stage its wp-content",
        description="The URL comes from $WPCLONE_BACKUP_URL (never an argument: it may carry a token); "
        "the fresh database from TARGET_DB_*, the clone's wp-content from TARGET_CONTENT_DIR, the URL "
        "policy from $WPCLONE_FETCH_POLICY.",
    )
    restore.add_argument("clone_url", help="the clone's URL: the backup's site URL is rewritten to it")
    restore.add_argument("--table-prefix", default="wp_")
    restore.add_argument("--json", action="store_true", help=JSON_HELP)
    return parser


def run(argv: Sequence[str]) -> dict[str, object]:
    args = build_parser().parse_args(argv)
    if args.step == "copy-database":
        from wpclone.steps.copy_database import (  # noqa: PLC0415 (only the step that runs: see the docstring)
            LOAD_STREAMS,
            content_tables,
            copy_database,
            endpoints_from_env,
            parse_pairs,
            with_aliases,
        )

        aliases = [a.strip() for a in args.aliases.split(",") if a.strip()]
        pairs = with_aliases(parse_pairs(args.urls), aliases)
        streams = LOAD_STREAMS if args.parallel is None else args.parallel
        if not 1 <= streams <= 8:
            raise ConfigError(f"--parallel must be between 1 and 8, not {streams}.")
        source, target = endpoints_from_env()
        skip = content_tables(args.table_prefix) if args.copy_mode == "files" else []
        return copy_database(
            source,
            target,
            pairs,
            streams=streams,
            client_load=args.client_load,
            skip_data=skip,
            copy_path=args.copy_path,
        ).as_json()
    if args.step == "copy-content":
        from wpclone.steps.copy_content import copy_content, dirs_from_args  # noqa: PLC0415 (see the docstring)

        src, dst = dirs_from_args(args.src, args.dst)
        return copy_content(src, dst, workers=args.workers, copy_mode=args.copy_mode).as_json()
    from wpclone.steps.backup import BACKUP_URL_ENV, backup_clone, restore_backup  # noqa: PLC0415 (see the docstring)

    if args.step == "backup-clone":
        return backup_clone(args.clone_id, args.site_url, args.table_prefix)
    if args.step == "restore-backup":
        url = os.environ.get(BACKUP_URL_ENV)
        if not url:
            raise ConfigError(f"{BACKUP_URL_ENV} is not set in the environment.")
        return restore_backup(url, args.clone_url, args.table_prefix)
    raise ConfigError(f"unknown step {args.step!r}.")  # pragma: no cover - argparse rejects it first


def main(argv: Sequence[str] | None = None) -> int:
    die_with_parent()
    setup_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    step = argv[0] if argv and not argv[0].startswith("-") else "steps"
    try:
        emit_result(run(argv))
    except ConfigError as exc:
        log.error("step=%s event=failed reason=config", step)
        print(f"error: {sentence(str(exc))}", file=sys.stderr)
        return 2
    except StepError as exc:
        log.error("step=%s event=failed", step)
        print(f"error: {sentence(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: {step} was interrupted.", file=sys.stderr)
        return 130
    except Exception as exc:  # a database driver's error is a sentence too, never its (code, "...") tuple
        said = driver_error_sentence(exc)
        if said is None:
            raise
        log.error("step=%s event=failed reason=database", step)
        print(f"error: {step}: {sentence(said)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
