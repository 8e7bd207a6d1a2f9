"""The realistic source site ``source`` of the local stack: WordPress installed and filled like a real site.

Two stages. ``seed.php`` (WordPress APIs, no wp-cli) installs the site and creates the content real sites
hold: the classic theme, block-markup posts and pages with plain and JSON-escaped URLs, media with generated
sizes, menus, widgets, theme mods, nested serialized options, page-builder postmeta and comments. Then,
to reach ``posts`` posts, rows modelled on those are bulk-inserted with multi-row INSERTs (fast: tens of
thousands of posts and hundreds of MB in a minute or two).

Re-running is a no-op on a seeded site (it only tops up posts when more are asked for); ``force`` drops
the site and seeds it again. Seeding keeps the seeded site's entry in ``<state dir>/wpclone.json`` current
and leaves the rest of that file alone (:func:`wpclone.config.write_local_config`).

The same machinery builds other sites (``tests/fixtures/othersite.py``): :func:`run_seed_php` installs a
registered site at any URL and runs a content script of its own inside it (``seed.php run``), and
:func:`insert_posts` bulk-inserts :class:`PostRow` s.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymysql.converters import escape_string

from wpclone.config import write_local_config
from wpclone.db import DbEndpoint, quote_identifier
from wpclone.errors import ConfigError
from wpclone.local.mariadb import LOCAL_USER_HOST, LocalMariaDB
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import (
    SiteConfig,
    SiteHost,
    load_site,
    register_site,
    unregister_site,
)
from wpclone.mysql_admin import MySqlAdmin
from wpclone.php import php_serialize

log = logging.getLogger(__name__)

SOURCE = "source"
SOURCE_TITLE = "Northwind Field Station"
DEFAULT_POSTS = 200
SEED_PHP = Path(__file__).resolve().parent / "seed.php"
BULK_BATCH_ROWS = 400
BULK_WORKERS = 4
PHP_TIMEOUT_S = 600


def source_config(settings: StackSettings) -> SiteConfig:
    """The source site's config; its secret files are created on first use (mode 0600)."""
    settings.secret(f"site-{SOURCE}-db")
    settings.secret(f"site-{SOURCE}-admin")
    return SiteConfig(
        name=SOURCE,
        url=settings.site_url(SOURCE),
        db_host="127.0.0.1",
        db_port=settings.db_port,
        db_name=f"wp_{SOURCE}",
        db_user=f"wp_{SOURCE}",
        db_password_file=settings.secrets_dir / f"site-{SOURCE}-db",
        table_prefix="wp_",
        admin_user="admin",
        admin_password_file=settings.secrets_dir / f"site-{SOURCE}-admin",
    )


def site_endpoint(config: SiteConfig) -> DbEndpoint:
    """The site's own database login (least privilege: only its database)."""
    return DbEndpoint(config.db_host, config.db_port, config.db_user, config.db_password(), config.db_name)


def site_admin_password(settings: StackSettings, name: str = SOURCE) -> str:
    return load_site(settings, name).admin_password()


def _drop_site(settings: StackSettings, admin: DbEndpoint, config: SiteConfig) -> None:
    log.info("dropping site %s (database %s, user %s, content)", config.name, config.db_name, config.db_user)
    MySqlAdmin.from_endpoint(admin).drop_database_and_user(
        config.db_name, config.db_user, user_host=LOCAL_USER_HOST
    )
    unregister_site(settings, config.name)


def run_seed_php(
    host: SiteHost,
    mode: str,
    name: str,
    *args: str,
    stdin: str = "",
    title: str = SOURCE_TITLE,
    url: str | None = None,
) -> dict[str, Any]:
    """Run ``seed.php <mode> <name> <args>`` for a registered site; returns its JSON summary line.

    ``url``: the URL WordPress is installed and filled at, when it is not the one the site host serves
    the site at (``WPCLONE_SEED_URL``).
    """
    env = {**host.env(), "WPCLONE_SEED_TITLE": title}
    if url:
        env["WPCLONE_SEED_URL"] = url
    result = subprocess.run(
        ["php", "-d", "memory_limit=1G", str(SEED_PHP), mode, name, *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=PHP_TIMEOUT_S,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        detail = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeError(f"seeding site {name} failed in the {mode} stage: {detail}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def seed_source(settings: StackSettings, posts: int = DEFAULT_POSTS, force: bool = False) -> SiteConfig:
    """Create (or top up) the source site with at least ``posts`` published posts; returns its config."""
    if posts < 0:
        raise ConfigError(f"--posts must be zero or more, not {posts}.")
    mariadb = LocalMariaDB(settings)
    if not mariadb.is_running():
        raise ConfigError("MariaDB is not running; start the stack with `python -m wpclone.local up` first.")
    admin = mariadb.admin
    config = source_config(settings)
    started = time.monotonic()
    if force:
        _drop_site(settings, admin, config)
    MySqlAdmin.from_endpoint(admin).create_database_and_user(
        config.db_name, config.db_user, config.db_password(), user_host=LOCAL_USER_HOST
    )
    register_site(settings, config)
    host = SiteHost(settings)
    host.build_core()
    installed = run_seed_php(host, "install", config.name, stdin=config.admin_password())
    log.info(
        "install stage: %s", "installed WordPress" if installed.get("installed") else "already installed"
    )
    content = run_seed_php(host, "content", config.name)
    log.info("content stage: %s", "created content" if content.get("seeded") else "already seeded")
    added = bulk_posts(config, posts)

    write_local_config(settings)  # the local runtime's configuration: this site is a registered source
    log.info(
        "site %s ready at %s (%d posts added in bulk, %.1f s); admin user %s, password in %s",
        config.name,
        config.url,
        added,
        time.monotonic() - started,
        config.admin_user,
        config.admin_password_file,
    )
    return config


def database_size(endpoint: DbEndpoint, database: str) -> int:
    """Data + index bytes of a database, per information_schema (statistics refreshed first)."""
    with endpoint.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (database,))
        tables = [f"{quote_identifier(database)}.{quote_identifier(str(row[0]))}" for row in cur.fetchall()]
        if tables:
            cur.execute("ANALYZE TABLE " + ", ".join(tables))
            cur.fetchall()
        cur.execute(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
            "WHERE table_schema = %s",
            (database,),
        )
        row = cur.fetchone()
    return int(row[0]) if row else 0


# ---- bulk rows ---------------------------------------------------------------------------------------------


def _json(value: object) -> str:
    """json_encode() as WordPress stores it: slashes escaped as \\/."""
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/")


@dataclass(frozen=True)
class _Image:
    id: int
    url: str


PARAGRAPHS = (
    "The morning count began at the north rocks, where the tide had left long pools full of small fish. "
    "We logged every bird we could identify and photographed the rest for later.",
    "Water temperature rose half a degree over the week, which matches the long-term trend in our records. "
    "The full series is published with the station's open data.",
    "Volunteers repaired the boardwalk to the hide and cleared the path along the dunes; "
    "visitors can reach the observation point again without boots.",
    "In the afternoon the wind turned west and the swell built quickly, so the boat survey was postponed "
    "to the next calm day, as the safety plan requires.",
)


def _post_content(url: str, n: int, image: _Image) -> str:
    esc = url.replace("/", "\\/")
    blocks = []
    for k in range(3):
        text = " ".join(PARAGRAPHS[(n + k + j) % len(PARAGRAPHS)] for j in range(2))
        blocks.append(
            f"<!-- wp:paragraph -->\n<p>{text} "
            f'See <a href="{url}/field-note-{max(n - 1, 1)}/">the previous note</a>, '
            f'<a href="{url}/data/">the open data</a> and '
            f'<a href="{url}/?p={n}">this note\'s short link</a>.</p>\n'
            "<!-- /wp:paragraph -->"
        )
    img_url = image.url.replace("/", "\\/")
    img_attrs = f'{{"id":{image.id},"sizeSlug":"large","linkDestination":"media","url":"{img_url}"}}'
    blocks.append(
        f"<!-- wp:image {img_attrs} -->\n"
        f'<figure class="wp-block-image size-large"><a href="{image.url}"><img src="{image.url}" alt="" '
        f'class="wp-image-{image.id}"/></a><figcaption>From the archive, note {n}.</figcaption></figure>\n'
        "<!-- /wp:image -->"
    )
    blocks.append(
        f'<!-- wp:cover {{"url":"{img_url}","id":{image.id},"dimRatio":50}} -->\n'
        '<div class="wp-block-cover"><span aria-hidden="true" '
        'class="wp-block-cover__background has-background-dim"></span>'
        f'<img class="wp-block-cover__image-background wp-image-{image.id}" alt="" src="{image.url}" '
        f'data-object-fit="cover"/><div class="wp-block-cover__inner-container"><!-- wp:paragraph -->\n'
        f"<p>Field note {n}</p>\n<!-- /wp:paragraph --></div></div>\n<!-- /wp:cover -->"
    )
    blocks.append(
        f'<!-- wp:wpclone/related {{"links":["{esc}\\/about\\/","{esc}\\/data\\/"],"more":"{esc}\\/"}} /-->'
    )
    blocks.append(
        '<!-- wp:buttons -->\n<div class="wp-block-buttons"><!-- wp:button -->\n'
        '<div class="wp-block-button"><a class="wp-block-button__link wp-element-button" '
        f'href="{url}/contact/">'
        "Send us a sighting</a></div>\n<!-- /wp:button --></div>\n<!-- /wp:buttons -->"
    )
    return "\n\n".join(blocks)


def _post_meta(url: str, n: int, image: _Image) -> list[tuple[str, str]]:
    layout = _json(
        {
            "rows": [
                {"image": image.url, "link": f"{url}/field-note-{n}/", "title": f"Field note {n}"},
                {"columns": [{"text": PARAGRAPHS[n % 4], "href": f"{url}/data/"} for _ in range(3)]},
            ]
        }
    )
    builder = php_serialize({"version": 3, "layout": layout, "background": image.url})
    elementor = _json(
        [
            {
                "id": f"{n:07x}"[-7:],
                "elType": "section",
                "elements": [
                    {
                        "id": f"{n + 1:07x}"[-7:],
                        "elType": "widget",
                        "widgetType": "image",
                        "settings": {
                            "image": {"url": image.url, "id": image.id},
                            "link": {"url": f"{url}/contact/"},
                        },
                    },
                    {
                        "id": f"{n + 2:07x}"[-7:],
                        "elType": "widget",
                        "widgetType": "text-editor",
                        "settings": {
                            "editor": f'<p>{PARAGRAPHS[(n + 1) % 4]} <a href="{url}/about/">About</a></p>'
                        },
                    },
                ],
            }
        ]
    )
    return [
        ("_wpclone_builder_layout", builder),
        ("_elementor_edit_mode", "builder"),
        ("_elementor_data", elementor),
        ("_thumbnail_id", str(image.id)),
    ]


def _comment_text(url: str, n: int) -> str:
    return f'Thanks for note {n}! See <a href="{url}/field-note-{n}/">this</a>.'


def _sql_str(value: str) -> str:
    return "'" + str(escape_string(value)) + "'"


@dataclass(frozen=True)
class Comment:
    author: str
    email: str
    url: str
    content: str


@dataclass(frozen=True)
class PostRow:
    """A published post as :func:`insert_posts` writes it: its row, postmeta, comments and category."""

    id: int
    date: str  # UTC, 'YYYY-MM-DD HH:MM:SS'
    title: str
    slug: str
    content: str
    excerpt: str
    guid: str
    meta: Sequence[tuple[str, str]] = ()
    comments: Sequence[Comment] = ()
    category: int = 1  # a term_taxonomy_id (1: Uncategorized); see update_category_counts


def insert_posts(endpoint: DbEndpoint, prefix: str, rows: Sequence[PostRow]) -> None:
    """Insert posts with multi-row INSERTs in one transaction (fast: no WordPress per post)."""
    posts: list[str] = []
    metas: list[str] = []
    comments: list[str] = []
    terms: list[str] = []
    for row in rows:
        date, n = row.date, row.id
        posts.append(
            f"({n},1,'{date}','{date}',{_sql_str(row.content)},{_sql_str(row.title)},"
            f"{_sql_str(row.excerpt)},'publish','open','open','',{_sql_str(row.slug)},'','','{date}','{date}',"
            f"'',0,{_sql_str(row.guid)},0,'post','',{len(row.comments)})"
        )
        metas.extend(f"({n},{_sql_str(key)},{_sql_str(value)})" for key, value in row.meta)
        comments.extend(
            f"({n},{_sql_str(c.author)},{_sql_str(c.email)},{_sql_str(c.url)},'127.0.0.1',"
            f"'{date}','{date}',{_sql_str(c.content)},0,'1','','comment',0,0)"
            for c in row.comments
        )
        terms.append(f"({n},{row.category},0)")
    p = prefix
    statements = [
        f"INSERT INTO `{p}posts` (ID,post_author,post_date,post_date_gmt,post_content,post_title,"
        "post_excerpt,post_status,comment_status,ping_status,post_password,post_name,to_ping,pinged,post_modified,"
        "post_modified_gmt,post_content_filtered,post_parent,guid,menu_order,post_type,post_mime_type,"
        "comment_count) VALUES " + ",".join(posts),
        f"INSERT INTO `{p}term_relationships` (object_id,term_taxonomy_id,term_order) VALUES "
        + ",".join(terms),
    ]
    if metas:
        statements.append(
            f"INSERT INTO `{p}postmeta` (post_id,meta_key,meta_value) VALUES " + ",".join(metas)
        )
    if comments:
        statements.append(
            f"INSERT INTO `{p}comments` (comment_post_ID,comment_author,comment_author_email,"
            "comment_author_url,comment_author_IP,comment_date,comment_date_gmt,comment_content,"
            "comment_karma,comment_approved,comment_agent,comment_type,comment_parent,user_id) VALUES "
            + ",".join(comments)
        )
    with endpoint.connect() as conn, conn.cursor() as cur:
        cur.execute("SET SESSION unique_checks = 0")
        conn.begin()
        for sql in statements:
            cur.execute(sql)
        conn.commit()


def update_category_counts(endpoint: DbEndpoint, prefix: str) -> None:
    """Recount the posts of every category (WordPress shows these counts; bulk inserts skip them)."""
    with endpoint.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE `{prefix}term_taxonomy` tt SET tt.count = "
            f"(SELECT COUNT(*) FROM `{prefix}term_relationships` tr "
            "WHERE tr.term_taxonomy_id = tt.term_taxonomy_id) WHERE tt.taxonomy = 'category'"
        )


def post_date(n: int, base: float) -> str:
    """The n-th bulk post's date: ten years before ``base``, ten minutes apart."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base - 86400 * 3650 + n * 600))


def _insert_batch(endpoint: DbEndpoint, prefix: str, url: str, ids: list[int], images: list[_Image]) -> None:
    base = time.time()
    rows = []
    for n in ids:
        image = images[n % len(images)]
        v = n % 97
        comment = Comment(f"Visitor {v}", f"visitor{v}@example.org", f"{url}/about/", _comment_text(url, n))
        rows.append(
            PostRow(
                id=n,
                date=post_date(n, base),
                title=f"Field note {n}",
                slug=f"field-note-{n}",
                content=_post_content(url, n, image),
                excerpt=f"Field note {n}.",
                guid=f"{url}/?p={n}",
                meta=_post_meta(url, n, image),
                comments=[comment],
            )
        )
    insert_posts(endpoint, prefix, rows)


def bulk_posts(config: SiteConfig, posts: int) -> int:
    """Bulk-insert posts (with postmeta, a comment and a category each) until ``posts`` are published."""
    endpoint = site_endpoint(config)
    prefix = config.table_prefix
    with endpoint.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT COUNT(*) FROM `{prefix}posts` WHERE post_type = 'post' AND post_status = 'publish'"
        )
        have = int(cur.fetchone()[0])
        if have >= posts:
            return 0
        cur.execute(f"SELECT COALESCE(MAX(ID), 0) FROM `{prefix}posts`")
        start = int(cur.fetchone()[0]) + 1
        cur.execute(
            f"SELECT ID, guid FROM `{prefix}posts` "
            "WHERE post_type = 'attachment' AND post_mime_type LIKE 'image/%%'"
        )
        images = [_Image(int(row[0]), str(row[1])) for row in cur.fetchall()]
    if not images:
        raise RuntimeError(
            f"site {config.name} has no image attachments to model bulk posts on; reseed with force."
        )
    count = posts - have
    log.info("bulk-inserting %d posts into %s", count, config.db_name)
    url = config.url.rstrip("/")
    ids = list(range(start, start + count))
    batches = [ids[i : i + BULK_BATCH_ROWS] for i in range(0, len(ids), BULK_BATCH_ROWS)]
    started = time.monotonic()
    done = 0
    with ThreadPoolExecutor(BULK_WORKERS) as pool:
        for _ in pool.map(lambda batch: _insert_batch(endpoint, prefix, url, batch, images), batches):
            done += 1
            if done % 25 == 0 or done == len(batches):
                log.info(
                    "bulk insert: %d/%d posts (%.0f s)",
                    min(done * BULK_BATCH_ROWS, count),
                    count,
                    time.monotonic() - started,
                )
    update_category_counts(endpoint, prefix)
    return count


__all__ = [
    "DEFAULT_POSTS",
    "SOURCE",
    "Comment",
    "PostRow",
    "database_size",
    "insert_posts",
    "run_seed_php",
    "seed_source",
    "site_admin_password",
    "site_endpoint",
    "source_config",
    "update_category_counts",
]
