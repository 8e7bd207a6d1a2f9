"""``python -m wpclone.local up|down|status|seed``: run the local stack (MariaDB + PHP site host + Airflow).

Progress is logged as lines; a failure exits non-zero with one clear sentence.
"""

from __future__ import annotations

import argparse
import logging
import sys

import pymysql

from wpclone.db import ConfigError
from wpclone.local.airflow import LocalAirflow
from wpclone.local.mariadb import ADMIN_USER, LocalMariaDB
from wpclone.local.seed import DEFAULT_POSTS, database_size, seed_source
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteHost, list_sites

log = logging.getLogger("wpclone.local")


def up(settings: StackSettings, airflow: bool = False) -> None:
    """Start MariaDB and the site host (and Airflow); does nothing for what already runs."""
    LocalMariaDB(settings).start()
    SiteHost(settings).start()
    if airflow:
        LocalAirflow(settings).start()


def down(settings: StackSettings) -> None:
    """Stop Airflow, the site host and MariaDB; leaves no process behind."""
    LocalAirflow(settings).stop()
    SiteHost(settings).stop()
    LocalMariaDB(settings).stop()
    log.info("local stack stopped")


def status(settings: StackSettings) -> int:
    """Print what runs, the ports, the admin DB endpoint and the sites; 0 when everything runs."""
    mariadb = LocalMariaDB(settings)
    host = SiteHost(settings)
    db_up, host_up = mariadb.is_running(), host.is_running()
    print(f"state dir:  {settings.state_dir}")
    print(
        f"mariadb:    {'running' if db_up else 'stopped'} (pid {mariadb.pid() or '-'}) "
        f"on 127.0.0.1:{settings.db_port}"
    )
    print(
        f"admin db:   {ADMIN_USER}@127.0.0.1:{settings.db_port} "
        f"(password in {settings.secrets_dir / 'mysql-admin'})"
    )
    print(
        f"site host:  {'running' if host_up else 'stopped'} (pid {host.pid() or '-'}) "
        f"on 127.0.0.1:{settings.http_port}"
    )
    airflow = LocalAirflow(settings)
    print(
        f"airflow:    {'running' if airflow.is_running() else 'stopped'} (pid {airflow.pid() or '-'}) "
        f"on {airflow.url} (login admin, password in {settings.secrets_dir / 'airflow-admin'})"
    )
    sites = list_sites(settings)
    print(f"sites:      {len(sites)}")
    for site in sites:
        print(f"  {site.name:<24} {site.url}/  db {site.db_name}")
    return 0 if db_up and host_up else 3


def demo(settings: StackSettings) -> int:
    """The README's first command: the stack and Airflow up, the source seeded, one clone through the API."""
    from wpclone import cli

    up(settings, airflow=True)
    source = seed_source(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the CLI's requests are not news
    airflow = LocalAirflow(settings)
    print(f"\nCloning {source.url}/ through the jobs API ({airflow.url}/wpclone/docs):", flush=True)
    code = cli.main(["clone", source.url, "--wait"])
    print(
        f"""
Airflow UI:   {airflow.url}/  (login admin, password: cat {settings.secrets_dir / "airflow-admin"})
Source site:  {source.url}/
CLI:          .venv/bin/wpclone list | status JOB_ID | clone URL --wait | delete CLONE_ID --wait
Stop it all:  make demo-down"""
    )
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wpclone.local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start MariaDB and the PHP site host (idempotent)")
    start.add_argument("--airflow", action="store_true", help="also start Airflow with our DAGs and API")
    sub.add_parser("down", help="stop Airflow, the site host and MariaDB; leaves no process behind")
    sub.add_parser("status", help="show what runs, ports, admin DB endpoint and registered sites")
    sub.add_parser("demo", help="up with Airflow, seed the source, clone it through the jobs API")
    seed = sub.add_parser("seed", help="create the realistic source site")
    seed.add_argument(
        "--posts", type=int, default=DEFAULT_POSTS, help=f"published posts (default {DEFAULT_POSTS})"
    )
    seed.add_argument("--force", action="store_true", help="drop the source site and seed it again")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = StackSettings.load()
        if args.command == "up":
            up(settings, airflow=args.airflow)
        elif args.command == "down":
            down(settings)
        elif args.command == "status":
            return status(settings)
        elif args.command == "demo":
            return demo(settings)
        elif args.command == "seed":
            config = seed_source(settings, posts=args.posts, force=args.force)
            size = database_size(LocalMariaDB(settings).admin, config.db_name)
            log.info("database %s: %.1f MB (data + index)", config.db_name, size / 1e6)
    except (ConfigError, RuntimeError, OSError, pymysql.MySQLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
