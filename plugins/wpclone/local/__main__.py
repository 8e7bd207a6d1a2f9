"""``python -m wpclone.local up|down|status|seed|demo``: run the local stack (MariaDB + PHP site host +
Airflow); ``add-source|remove-source|sources``: the sites it may clone (``wpclone.local.sources``);
``cluster-up|cluster-down``: the cluster tier's local Kubernetes control plane (``wpclone.local.cluster``).

``demo`` registers the seeded source as the Airflow connection ``wpclone_source_source`` (through the REST
API of the Airflow it started) instead of the JSON configuration, as a platform team registers its sites.

Progress is logged as lines; a failure exits non-zero with one clear sentence.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pymysql

from wpclone import cli
from wpclone.config import local_config, local_sources, remove_local_source
from wpclone.errors import ConfigError
from wpclone.local.airflow import LocalAirflow
from wpclone.local.cluster import Cluster
from wpclone.local.mariadb import ADMIN_USER, LocalMariaDB
from wpclone.local.seed import DEFAULT_POSTS, database_size, seed_source
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteHost, list_sites
from wpclone.local.sources import add_source, remove_source
from wpclone.sources import connection_body, source_conn_id

log = logging.getLogger("wpclone.local")


def up(settings: StackSettings, airflow: bool = False) -> None:
    """Start MariaDB and the site host (and Airflow); does nothing for what already runs."""
    LocalMariaDB(settings).start()
    SiteHost(settings).start()
    if airflow:
        LocalAirflow(settings).start()


def down(settings: StackSettings) -> None:
    """Stop Airflow, the site host, MariaDB and the cluster; leaves no process behind."""
    LocalAirflow(settings).stop()
    Cluster(settings).stop()
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
    list_sources(settings)
    return 0 if db_up and host_up else 3


def cluster_up(settings: StackSettings) -> None:
    """Start the local control plane and say how to reach it."""
    cluster = Cluster(settings)
    cluster.start()
    print(
        f"""API server:  {cluster.server} (Kubernetes 1.20.2, RBAC on; no node until one is started)
kubeconfig:  {cluster.kubeconfig} (admin; e.g. KUBECONFIG={cluster.kubeconfig} kubectl get ns)
a node:      .venv/bin/python -m tests.kube.node_agent --kubeconfig {cluster.kubeconfig}
stop it:     make cluster-down"""
    )


def list_sources(settings: StackSettings) -> None:
    """Print the registered sources (what ``wpclone clone URL`` accepts)."""
    sources = local_sources(settings)
    print(f"sources:    {len(sources)} (in {settings.state_dir / 'wpclone.json'})")
    for source in sources:
        aliases = f" (also {', '.join(source.aliases)})" if source.aliases else ""
        print(
            f"  {source.name:<24} {source.url}/{aliases}  db {source.db_name} on "
            f"{source.db_host}:{source.db_port}, tables {source.table_prefix}*"
        )


def demo(settings: StackSettings) -> int:
    """The README's first command: the stack and Airflow up, the source seeded, one clone through the API."""

    up(settings, airflow=True)
    source = seed_source(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the CLI's requests are not news
    airflow = LocalAirflow(settings)
    # Registered as an Airflow connection, as a platform team registers its sites (docs/sources.md): the
    # seed's entry in wpclone.json moves to the connection wpclone_source_source.
    configured = local_config(settings).sources[0]
    airflow.put_connection(connection_body(configured, source.db_password()))
    remove_local_source(settings, configured.name)
    print(f"Source {configured.name} registered as the Airflow connection {source_conn_id(configured.name)}")
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


def _source_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("sources", help="list the registered sources")
    add = sub.add_parser(
        "add-source",
        help="register a WordPress site as a source (checked first), or update it",
        description="Register a WordPress site as a source. The database login, table prefix, URL and "
        "content directory are checked before anything is written. --wp-config reads the database "
        "settings from the site's wp-config.php; the other options override what it says.",
    )
    add.add_argument("name", help="the source's name: lower-case letters, digits and '-'")
    add.add_argument("--wp-config", type=Path, help="the site's wp-config.php (plain string settings)")
    add.add_argument("--url", help="the site's URL, e.g. https://www.example.com (default: its home option)")
    add.add_argument("--alias", action="append", default=[], help="another name of the site (repeatable)")
    add.add_argument("--db-host", help="database host (default 127.0.0.1)")
    add.add_argument("--db-port", type=int, help="database port (default 3306)")
    add.add_argument("--db-name", help="database name")
    add.add_argument("--db-user", help="database login (it needs to read the site's tables)")
    add.add_argument("--db-password-file", help="file holding that login's password (mode 0600)")
    add.add_argument("--table-prefix", help="WordPress table prefix (default wp_)")
    add.add_argument("--content-dir", help="the site's wp-content directory")
    add.add_argument(
        "--link-root",
        action="append",
        help="a directory outside wp-content that links in it may point into (repeatable; default: "
        "the runtime's, WordPress's core directory)",
    )
    remove = sub.add_parser("remove-source", help="unregister a source (its site and data are untouched)")
    remove.add_argument("name")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wpclone.local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start MariaDB and the PHP site host (idempotent)")
    start.add_argument("--airflow", action="store_true", help="also start Airflow with our DAGs and API")
    sub.add_parser("down", help="stop Airflow, the site host, MariaDB and the cluster; nothing left running")
    sub.add_parser("cluster-up", help="start the local Kubernetes control plane (built by make kube-build)")
    sub.add_parser("cluster-down", help="stop the local Kubernetes control plane (its data stays)")
    sub.add_parser("status", help="show what runs, ports, admin DB endpoint and registered sites")
    sub.add_parser("demo", help="up with Airflow, seed the source, clone it through the jobs API")
    seed = sub.add_parser("seed", help="create the realistic source site")
    seed.add_argument(
        "--posts", type=int, default=DEFAULT_POSTS, help=f"published posts (default {DEFAULT_POSTS})"
    )
    seed.add_argument("--force", action="store_true", help="drop the source site and seed it again")
    _source_arguments(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = StackSettings.load()
        if args.command == "up":
            up(settings, airflow=args.airflow)
        elif args.command == "down":
            down(settings)
        elif args.command == "cluster-up":
            cluster_up(settings)
        elif args.command == "cluster-down":
            Cluster(settings).stop()
        elif args.command == "status":
            return status(settings)
        elif args.command == "demo":
            return demo(settings)
        elif args.command == "seed":
            config = seed_source(settings, posts=args.posts, force=args.force)
            size = database_size(LocalMariaDB(settings).admin, config.db_name)
            log.info("database %s: %.1f MB (data + index)", config.db_name, size / 1e6)
        elif args.command == "sources":
            list_sources(settings)
        elif args.command == "add-source":
            source = add_source(
                settings,
                args.name,
                url=args.url,
                wp_config=args.wp_config,
                db_host=args.db_host,
                db_port=args.db_port,
                db_name=args.db_name,
                db_user=args.db_user,
                db_password_file=args.db_password_file,
                table_prefix=args.table_prefix,
                content_dir=args.content_dir,
                aliases=tuple(args.alias),
                link_roots=tuple(args.link_root) if args.link_root else None,
            )
            print(f"Registered {source.name}; clone it with: .venv/bin/wpclone clone {source.url} --wait")
        elif args.command == "remove-source":
            remove_source(settings, args.name)
    except (ConfigError, RuntimeError, OSError, pymysql.MySQLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
