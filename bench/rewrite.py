"""Benchmark of the dump URL rewriter (``python -m wpclone.rewrite``), each engine, against plain ``sed``.

Usage::

    .venv/bin/python bench/rewrite.py              # both 220 MB dumps, both engines, 3 rounds
    .venv/bin/python bench/rewrite.py --quick      # 20 MB dumps: a smoke test
    .venv/bin/python bench/rewrite.py --size-mb 400 --rounds 5
    .venv/bin/python bench/rewrite.py --serialized # only the serialized-dense dump (options, postmeta)
    .venv/bin/python bench/rewrite.py --bench-only # only the bench's own dump
    .venv/bin/python bench/rewrite.py --engines c  # one engine (default: c,python; the first is "ours")
    .venv/bin/python bench/rewrite.py --baseline /path/to/other/plugins   # another checkout side by side
    .venv/bin/python bench/rewrite.py --dump FILE  # an existing dump (e.g. one of an earlier generator)

1. Generates (once, reused while the parameters match) two mysqldump-shaped files modelled on MariaDB
   ``mariadb-dump`` output of a WordPress database, under ``<state dir>/bench/`` (state dir: env
   ``WPCLONE_STATE_DIR`` or ``<repo>/.local``). The *bench dump*: header, CREATE TABLE statements, ~1 MB
   extended INSERT lines; ``wp_posts`` with Gutenberg markup (plain and JSON-escaped URLs, multibyte text,
   quotes, backslashes, ``\\r\\n``), ``wp_postmeta``/``wp_options`` with PHP-serialized values (correct byte
   lengths), JSON page-builder data and serialized strings holding JSON. Since generator 2 the source URL
   also appears in every other form a site pair covers (``https://`` on this ``http://`` source,
   protocol-relative, JSON-escaped protocol-relative, URL-encoded in upper- and lower-case hex) and next to
   sister links the rewrite must leave alone (``…:8080.au``, ``…:80801``). The *serialized-dense dump*:
   options and serialized postmeta only, half and half (how WooCommerce, ACF and widget-heavy sites look).
   Deterministic (seeded).
2. Times each engine (``WPCLONE_REWRITE_ENGINE``: the compiled ``c`` one and the ``python`` reference; every
   form enabled: OLD and NEW are a site pair) and sed on each file, alternating, and takes the median per
   tool. The engines' peak RSS comes from ``os.wait4``.
3. Rewrites each file once more with each tool into files: the engines' outputs must be identical byte for
   byte and their counts the same; the first engine's output is compared with sed's line by line and field
   by field, what is left of each form of OLD (host boundary respected) and how many sister links changed are
   counted, and a sample of the serialized values of both outputs is checked with PHP ``unserialize``.
4. Prints both dumps side by side: each engine's MB/s and its ratio to sed measured in the same run.

sed is the *unsafe* speed baseline, the same two expressions in every version of this bench: the plain and
dump-escaped JSON ``http://`` form. It leaves serialized lengths stale, leaves the other forms, and rewrites
sister links (it has no host boundary). Targets: speed ours/sed >= 0.25x on both dumps (moonshot 0.5x), peak
RSS < 100 MB. Prints PASS/MISS per target and always exits 0 (unless the benchmark itself cannot run).
"""

from __future__ import annotations

import argparse
import filecmp
import itertools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from wpclone.php import PhpObject, php_serialize
from wpclone.rewrite import ENGINE_ENV, ENGINES

REPO_ROOT = Path(__file__).resolve().parents[1]
GENERATOR_VERSION = 2

OLD = "http://source.localhost:8080"
NEW = "http://clone-abc.localhost:8080"
OLD_JSON = OLD.replace("/", "\\/")
NEW_JSON = NEW.replace("/", "\\/")
# The needles as they appear inside a dump literal (mysqldump doubles backslashes).
OLD_BYTES = OLD.encode()
OLD_JSON_DUMP = OLD_JSON.replace("\\", "\\\\").encode()
NEW_BYTES = NEW.encode()
NEW_JSON_DUMP = NEW_JSON.replace("\\", "\\\\").encode()

# sed: in a regex and in a replacement, ``\\`` stands for one backslash.
SED_SCRIPT = [
    "-e",
    f"s#{OLD}#{NEW}#g",
    "-e",
    "s#{}#{}#g".format(OLD_JSON.replace("\\", "\\\\\\\\"), NEW_JSON.replace("\\", "\\\\\\\\")),
]

NET_BUFFER_LENGTH = 1_000_000  # extended INSERT lines of about 1 MB, as mysqldump's net_buffer_length
SPEED_TARGET = 0.25
SPEED_MOONSHOT = 0.5
RSS_TARGET_MB = 100.0
PHP_SAMPLE = 2000

# --------------------------------------------------------------------------------------------------------
# Encoding helpers: mysqldump literals, PHP serialize, PHP json_encode
# --------------------------------------------------------------------------------------------------------

_MYSQL_ESCAPE = str.maketrans(
    {"\0": "\\0", "'": "\\'", '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z"}
)
_LITERAL = re.compile(rb"'([^'\\]*+(?:\\.[^'\\]*+)*+)'", re.DOTALL)
_UNESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_UNESCAPE_MAP = {b"0": b"\0", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}
# A serialized value as it starts in a literal's body (double quotes escaped) or in its value.
_SERIALIZED = re.compile(rb'(?:a:\d+:\{|[OCs]:\d+:\\?")')


def esc(value: str) -> str:
    """Escape ``value`` for the inside of a single-quoted literal, as mysqldump does."""
    return value.translate(_MYSQL_ESCAPE)


def unescape(body: bytes) -> bytes:
    """The value of a literal's body."""
    if b"\\" not in body:
        return body
    return _UNESCAPE.sub(lambda m: _UNESCAPE_MAP.get(m.group(1), m.group(1)), body)


def php_json(value: Any, *, unicode: bool = False) -> str:
    """PHP ``json_encode``: slashes escaped, non-ASCII as \\uXXXX unless ``unicode``."""
    return json.dumps(value, ensure_ascii=not unicode, separators=(",", ":")).replace("/", "\\/")


# --------------------------------------------------------------------------------------------------------
# Content generation
# --------------------------------------------------------------------------------------------------------

SENTENCES = [
    "WordPress makes it easy to publish and manage content.",
    "L'été dernier, nous avons visité la côte d'Azur — c'était magnifique.",
    "日本語のテキストもきちんと扱えます。東京は今日も晴れです。",
    'Emoji test 🎉🚀✨ with a "quoted" word and a 🧪 experiment.',
    "Don't forget: 100% of O'Reilly's readers said \"yes\".",
    "Ünïcödé naïve façade, smörgåsbord in Zürich, Ελληνικά and русский текст.",
    "Windows paths look like C:\\temp\\file.txt and regexes like \\d+\\.\\d+.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
    "Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip.",
    "Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore.",
    "Read the https://source.localhost:8080 announcement (the other scheme, rewritten too) & more.",
    "Caf\u00e9 cr\u00e8me, pi\u00f1a colada, jalape\u00f1o — ½ price <b>today</b>.",
    "Protocol-relative //source.localhost:8080/feed/ links move with the site.",
    "한국어 문장도 포함되어 있습니다. 中文内容也在这里。",
    "Our sister shops http://source.localhost:8080.au/shop/ and http://source.localhost:80801/ stay.",
    '<a href="https://www.facebook.com/sharer.php?u=http%3A%2F%2Fsource.localhost%3A8080%2F%3Fp%3D42">Share</a>',
]
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "café",
    "über",
    "naïve",
    "日本",
    "tokyo",
    "berlin",
    "paris",
    "news",
]
TITLES = [
    "Hello world!",
    "Café & Crème: a guide",
    "日本語のタイトル",
    "Top 10 tips 🚀",
    "Don't panic",
    'The "best" plugin',
    "Über uns",
    "Sample Page",
]


class ContentFactory:
    """Builds decoded (unescaped) WordPress values from templates, driven by a seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # -- small pieces -----------------------------------------------------------------------------------

    def text(self, n: int = 2) -> str:
        return " ".join(self.rng.choice(SENTENCES) for _ in range(n))

    def slug(self) -> str:
        return "-".join(self.rng.choice(WORDS[:6] + WORDS[9:]) for _ in range(3)) + str(
            self.rng.randrange(999)
        )

    def upload(self, ext: str = "jpg") -> tuple[int, str]:
        rng = self.rng
        return rng.randrange(
            10, 90000
        ), f"{rng.randrange(2019, 2025)}/{rng.randrange(1, 13):02d}/{self.slug()}.{ext}"

    def url(self) -> str:
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:
            return f"{OLD}/{self.slug()}/"
        if kind == 1:
            return f"{OLD}/?p={rng.randrange(1, 99999)}"
        if kind == 2:
            return f"{OLD}/wp-content/uploads/{self.upload()[1]}"
        return f"{OLD}/category/{self.slug()}/page/{rng.randrange(2, 9)}/"

    # -- Gutenberg blocks -------------------------------------------------------------------------------

    def block(self) -> str:
        rng = self.rng
        kind = rng.choices(range(9), weights=(30, 14, 6, 8, 4, 4, 4, 4, 6))[0]
        if kind == 0:
            link = f' <a href="{self.url()}">{rng.choice(WORDS)}</a>' if rng.random() < 0.5 else ""
            text = self.text(rng.randrange(1, 4))
            return f"<!-- wp:paragraph -->\n<p>{text}{link}</p>\n<!-- /wp:paragraph -->"
        if kind == 1:
            return self.image_block()
        if kind == 2:
            level = rng.randrange(2, 5)
            return (
                f'<!-- wp:heading {{"level":{level}}} -->\n<h{level} class="wp-block-heading">'
                f"{rng.choice(TITLES)}</h{level}>\n<!-- /wp:heading -->"
            )
        if kind == 3:
            items = "".join(
                f'<!-- wp:list-item -->\n<li><a href="{self.url()}">{self.text(1)}</a></li>\n'
                "<!-- /wp:list-item -->"
                for _ in range(rng.randrange(2, 6))
            )
            return f'<!-- wp:list -->\n<ul class="wp-block-list">{items}</ul>\n<!-- /wp:list -->'
        if kind == 4:
            media_id, path = self.upload()
            attrs = php_json({"url": f"{OLD}/wp-content/uploads/{path}", "id": media_id, "dimRatio": 50})
            return (
                f"<!-- wp:cover {attrs} -->\n"
                '<div class="wp-block-cover"><span aria-hidden="true" class="wp-block-cover__background '
                'has-background-dim"></span><img class="wp-block-cover__image-background '
                f'wp-image-{media_id}" '
                f'alt="" src="{OLD}/wp-content/uploads/{path}" data-object-fit="cover"/>'
                '<div class="wp-block-cover__inner-container"><!-- wp:paragraph -->\n'
                f"<p>{self.text(1)}</p>\n<!-- /wp:paragraph --></div></div>\n<!-- /wp:cover -->"
            )
        if kind == 5:
            video = "".join(rng.choice("abcdefghijkLMNOP0123456789_-") for _ in range(11))
            attrs = php_json(
                {
                    "url": f"https://www.youtube.com/watch?v={video}",
                    "type": "video",
                    "providerNameSlug": "youtube",
                }
            )
            return (
                f'<!-- wp:embed {attrs} -->\n<figure class="wp-block-embed is-type-video"><div '
                f'class="wp-block-embed__wrapper">\nhttps://www.youtube.com/watch?v={video}\n</div></figure>\n'
                "<!-- /wp:embed -->"
            )
        if kind == 6:
            return (
                "<!-- wp:code -->\n<pre class=\"wp-block-code\"><code>$path = 'C:\\\\Users\\\\demo';\n"
                f'echo "It\'s {OLD}/wp-json/wp/v2/posts";\n'
                '$json = \'{"home":"' + OLD_JSON + "\\/\"}';</code></pre>\n<!-- /wp:code -->"
            )
        if kind == 7:
            page = rng.randrange(2, 999)
            attrs = php_json(
                {
                    "label": rng.choice(TITLES),
                    "type": "page",
                    "id": page,
                    "url": f"{OLD}/{self.slug()}/",
                    "kind": "post-type",
                },
                unicode=True,
            )
            return f"<!-- wp:navigation-link {attrs} /-->"
        images = "".join(self.image_block() for _ in range(rng.randrange(2, 5)))
        return (
            '<!-- wp:gallery {"linkTo":"none"} -->\n<figure class="wp-block-gallery has-nested-images '
            f'columns-default is-cropped">{images}</figure>\n<!-- /wp:gallery -->'
        )

    def image_block(self) -> str:
        media_id, path = self.upload()
        attrs = php_json(
            {
                "id": media_id,
                "sizeSlug": "large",
                "linkDestination": "media",
                "url": f"{OLD}/wp-content/uploads/{path}",
            }
        )
        alt = self.rng.choice(TITLES).replace('"', "&quot;")
        return (
            f'<!-- wp:image {attrs} -->\n<figure class="wp-block-image size-large">'
            f'<a href="{OLD}/wp-content/uploads/{path}">'
            f'<img src="{OLD}/wp-content/uploads/{path[:-4]}-1024x683.jpg" '
            f'alt="{alt}" class="wp-image-{media_id}"/></a><figcaption class="wp-element-caption">'
            f"{self.text(1)}</figcaption></figure>\n<!-- /wp:image -->"
        )

    def post_content(self) -> str:
        rng = self.rng
        if rng.random() < 0.12:  # classic editor content, Windows line endings
            parts = []
            for _ in range(rng.randrange(3, 25)):
                if rng.random() < 0.3:
                    _, path = self.upload()
                    parts.append(
                        f'<img class="alignnone size-full" src="{OLD}/wp-content/uploads/{path}" alt="" '
                        'width="800" height="600" />'
                    )
                else:
                    parts.append(f'<p>{self.text(2)} <a href="{self.url()}">link</a></p>')
            return "\r\n\r\n".join(parts)
        return "\n\n".join(self.block() for _ in range(rng.randrange(3, 40)))

    # -- metadata -------------------------------------------------------------------------------------

    def attachment_metadata(self) -> dict[str, Any]:
        rng = self.rng
        _, path = self.upload()
        base = path.rsplit("/", 1)[1][:-4]
        sizes = {
            name: {
                "file": f"{base}-{w}x{h}.jpg",
                "width": w,
                "height": h,
                "mime-type": "image/jpeg",
                "filesize": rng.randrange(5000, 300000),
            }
            for name, w, h in (
                ("thumbnail", 150, 150),
                ("medium", 300, 200),
                ("medium_large", 768, 512),
                ("large", 1024, 683),
            )
        }
        image_meta = {
            "aperture": "0",
            "credit": "",
            "camera": "",
            "caption": "",
            "created_timestamp": "0",
            "copyright": "",
            "focal_length": "0",
            "iso": "0",
            "shutter_speed": "0",
            "title": rng.choice(TITLES),
            "orientation": "0",
            "keywords": [],
        }
        return {
            "width": 2048,
            "height": 1365,
            "file": path,
            "filesize": rng.randrange(100000, 900000),
            "sizes": sizes,
            "image_meta": image_meta,
        }

    def elementor_data(self) -> str:
        rng = self.rng
        widgets = []
        for i in range(rng.randrange(3, 15)):
            _, path = self.upload()
            widgets.append(
                {
                    "id": f"{rng.randrange(16**7):07x}",
                    "elType": "widget",
                    "settings": {
                        "title": rng.choice(TITLES),
                        "image": {"url": f"{OLD}/wp-content/uploads/{path}", "id": rng.randrange(10, 9000)},
                        "link": {"url": self.url(), "is_external": "", "nofollow": ""},
                        "background": f"//source.localhost:8080/wp-content/uploads/{path}",
                        "editor": f'<p>{self.text(1)} <a href="{self.url()}">more</a></p>',
                    },
                    "elements": [],
                    "widgetType": "image" if i % 2 else "text-editor",
                }
            )
        section = {
            "id": f"{rng.randrange(16**7):07x}",
            "elType": "section",
            "settings": {},
            "elements": widgets,
        }
        return php_json([section])

    def postmeta(self) -> tuple[str, str]:
        """A (meta_key, meta_value) pair."""
        rng = self.rng
        upload_url = f"{OLD}/wp-content/uploads/"
        kinds: list[tuple[int, Callable[[], tuple[str, str]]]] = [
            (12, lambda: ("_edit_lock", f"{rng.randrange(1600000000, 1730000000)}:1")),
            (8, lambda: ("_edit_last", "1")),
            (8, lambda: ("_thumbnail_id", str(rng.randrange(10, 90000)))),
            (8, lambda: ("_wp_attached_file", self.upload()[1])),
            (12, lambda: ("_wp_attachment_metadata", php_serialize(self.attachment_metadata()))),
            (5, lambda: ("_menu_item_url", self.url())),
            (5, lambda: ("_menu_item_classes", php_serialize([""]))),
            (6, lambda: ("_elementor_data", self.elementor_data())),
            (
                4,
                lambda: (
                    "_elementor_page_settings",
                    php_serialize({"background_image": {"url": upload_url + self.upload()[1], "id": 5}}),
                ),
            ),
            (10, self._download_meta),
            (6, self._layout_meta),
            (
                4,
                lambda: (
                    "_cached_object",
                    php_serialize(
                        PhpObject(
                            "stdClass",
                            {"url": self.url(), "title": rng.choice(TITLES), "count": rng.randrange(99)},
                        )
                    ),
                ),
            ),
            # Double-serialized, as some plugins do.
            (3, lambda: ("_double_serialized", php_serialize(php_serialize({"url": self.url(), "n": 3})))),
            (4, lambda: ("_yoast_wpseo_opengraph-image", upload_url + self.upload()[1])),
            (3, lambda: ("_wp_page_template", "default")),
            (
                2,
                lambda: (
                    "_oauth_redirect",
                    "https://accounts.example.org/o/oauth2/auth?redirect_uri="
                    "http%3a%2f%2fsource.localhost%3a8080%2fwp-login.php%3faction%3doauth&state=x",
                ),
            ),
            (5, self._links_meta),
        ]
        make = rng.choices([k[1] for k in kinds], weights=[k[0] for k in kinds])[0]
        return make()

    def _download_meta(self) -> tuple[str, str]:
        _, path = self.upload("pdf")
        return "_plugin_download", php_serialize({"file": path, "url": f"{OLD}/wp-content/uploads/{path}"})

    def _layout_meta(self) -> tuple[str, str]:
        """A serialized array whose string holds JSON with escaped-slash URLs."""
        layout = php_json(
            {"rows": [{"bg": self.url(), "cols": [{"link": self.url()}]}], "title": self.rng.choice(TITLES)}
        )
        return "_builder_layout", php_serialize({"layout": layout, "version": "1.2.3"})

    def _links_meta(self) -> tuple[str, str]:
        rng = self.rng
        links = {rng.choice(TITLES): self.url() for _ in range(rng.randrange(1, 6))}
        value = {"title": self.text(1), "links": links, "enabled": True, "ratio": 0.5}
        return "_related_links", php_serialize(value)

    def option(self, i: int) -> str:
        rng = self.rng
        kind = i % 4
        if kind == 0:
            widgets: dict[Any, Any] = {
                n: {
                    "title": rng.choice(TITLES),
                    "text": f'<p>{self.text(1)} <a href="{self.url()}">x</a></p>',
                    "filter": True,
                }
                for n in range(2, rng.randrange(3, 8))
            }
            widgets["_multiwidget"] = 1
            return php_serialize(widgets)
        if kind == 1:
            return php_serialize(
                {
                    0: False,
                    "nav_menu_locations": {"primary": rng.randrange(2, 9)},
                    "custom_css_post_id": -1,
                    "header_image": f"{OLD}/wp-content/uploads/{self.upload()[1]}",
                    "header_image_data": PhpObject(
                        "stdClass",
                        {
                            "attachment_id": rng.randrange(9999),
                            "url": self.url(),
                            "thumbnail_url": self.url(),
                            "height": 400,
                        },
                    ),
                }
            )
        if kind == 2:
            items = [
                {
                    "title": self.text(1),
                    "link": self.url(),
                    "date": time.strftime("%Y-%m-%d", time.gmtime(1.7e9 + n)),
                }
                for n in range(rng.randrange(5, 30))
            ]
            return php_serialize(
                {"items": items, "feed": f"{OLD}/feed/", "json": php_json({"u": self.url()})}
            )
        return php_serialize(
            {"rules": {f"^{self.slug()}/?$": f"index.php?pagename={self.slug()}" for _ in range(40)}}
        )


# --------------------------------------------------------------------------------------------------------
# The dump
# --------------------------------------------------------------------------------------------------------

HEADER = (
    "/*M!999999\\- enable the sandbox mode */ \n"
    + """-- MariaDB dump 10.19-11.4.4-MariaDB, for debian-linux-gnu (x86_64)
--
-- Host: 127.0.0.1    Database: wordpress
-- ------------------------------------------------------
-- Server version\t11.4.4-MariaDB-ubu2404

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET @OLD_CHARACTER_SET_RESULTS=@@CHARACTER_SET_RESULTS */;
/*!40101 SET @OLD_COLLATION_CONNECTION=@@COLLATION_CONNECTION */;
/*!40101 SET NAMES utf8mb4 */;
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;
/*!40103 SET TIME_ZONE='+00:00' */;
/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;
/*M!100616 SET @OLD_NOTE_VERBOSITY=@@NOTE_VERBOSITY, NOTE_VERBOSITY=0 */;
"""
)

FOOTER = """/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;
/*!40014 SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS */;
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;
/*!40101 SET CHARACTER_SET_RESULTS=@OLD_CHARACTER_SET_RESULTS */;
/*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;
/*M!100616 SET NOTE_VERBOSITY=@OLD_NOTE_VERBOSITY */;

-- Dump completed on 2024-11-28 18:21:07
"""

COLLATE = "ENGINE=InnoDB{ai} DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci"

TABLES: dict[str, str] = {
    "wp_options": """  `option_id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `option_name` varchar(191) NOT NULL DEFAULT '',
  `option_value` longtext NOT NULL,
  `autoload` varchar(20) NOT NULL DEFAULT 'yes',
  PRIMARY KEY (`option_id`),
  UNIQUE KEY `option_name` (`option_name`),
  KEY `autoload` (`autoload`)""",
    "wp_postmeta": """  `meta_id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `post_id` bigint(20) unsigned NOT NULL DEFAULT 0,
  `meta_key` varchar(255) DEFAULT NULL,
  `meta_value` longtext DEFAULT NULL,
  PRIMARY KEY (`meta_id`),
  KEY `post_id` (`post_id`),
  KEY `meta_key` (`meta_key`(191))""",
    "wp_posts": """  `ID` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `post_author` bigint(20) unsigned NOT NULL DEFAULT 0,
  `post_date` datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  `post_date_gmt` datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  `post_content` longtext NOT NULL,
  `post_title` text NOT NULL,
  `post_excerpt` text NOT NULL,
  `post_status` varchar(20) NOT NULL DEFAULT 'publish',
  `comment_status` varchar(20) NOT NULL DEFAULT 'open',
  `ping_status` varchar(20) NOT NULL DEFAULT 'open',
  `post_password` varchar(255) NOT NULL DEFAULT '',
  `post_name` varchar(200) NOT NULL DEFAULT '',
  `to_ping` text NOT NULL,
  `pinged` text NOT NULL,
  `post_modified` datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  `post_modified_gmt` datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  `post_content_filtered` longtext NOT NULL,
  `post_parent` bigint(20) unsigned NOT NULL DEFAULT 0,
  `guid` varchar(255) NOT NULL DEFAULT '',
  `menu_order` int(11) NOT NULL DEFAULT 0,
  `post_type` varchar(20) NOT NULL DEFAULT 'post',
  `post_mime_type` varchar(100) NOT NULL DEFAULT '',
  `comment_count` bigint(20) NOT NULL DEFAULT 0,
  PRIMARY KEY (`ID`),
  KEY `post_name` (`post_name`(191)),
  KEY `type_status_date` (`post_type`,`post_status`,`post_date`,`ID`),
  KEY `post_parent` (`post_parent`),
  KEY `post_author` (`post_author`)""",
    "wp_usermeta": """  `umeta_id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `user_id` bigint(20) unsigned NOT NULL DEFAULT 0,
  `meta_key` varchar(255) DEFAULT NULL,
  `meta_value` longtext DEFAULT NULL,
  PRIMARY KEY (`umeta_id`),
  KEY `user_id` (`user_id`),
  KEY `meta_key` (`meta_key`(191))""",
    "wp_users": """  `ID` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `user_login` varchar(60) NOT NULL DEFAULT '',
  `user_pass` varchar(255) NOT NULL DEFAULT '',
  `user_nicename` varchar(50) NOT NULL DEFAULT '',
  `user_email` varchar(100) NOT NULL DEFAULT '',
  `user_url` varchar(100) NOT NULL DEFAULT '',
  `user_registered` datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  `user_activation_key` varchar(255) NOT NULL DEFAULT '',
  `user_status` int(11) NOT NULL DEFAULT 0,
  `display_name` varchar(250) NOT NULL DEFAULT '',
  PRIMARY KEY (`ID`),
  KEY `user_login_key` (`user_login`),
  KEY `user_nicename` (`user_nicename`),
  KEY `user_email` (`user_email`)""",
}


@dataclass
class DumpWriter:
    out: Any  # a binary file
    written: int = 0
    rows: Counter[str] = field(default_factory=Counter)
    serialized: Counter[str] = field(default_factory=Counter)

    def write(self, text: str) -> None:
        data = text.encode()
        self.out.write(data)
        self.written += len(data)

    def table(self, name: str, rows: Iterator[str], budget: int, next_id: int) -> None:
        """Structure, then extended INSERT lines of about NET_BUFFER_LENGTH until ``budget`` bytes."""
        self.write(
            f"\n--\n-- Table structure for table `{name}`\n--\n\nDROP TABLE IF EXISTS `{name}`;\n"
            "/*!40101 SET @saved_cs_client     = @@character_set_client */;\n"
            "/*!40101 SET character_set_client = utf8mb4 */;\n"
            f"CREATE TABLE `{name}` (\n{TABLES[name]}\n) {COLLATE.format(ai=f' AUTO_INCREMENT={next_id}')};\n"
            "/*!40101 SET character_set_client = @saved_cs_client */;\n\n"
            f"--\n-- Dumping data for table `{name}`\n--\n\nLOCK TABLES `{name}` WRITE;\n"
            f"/*!40000 ALTER TABLE `{name}` DISABLE KEYS */;\n"
        )
        prefix = f"INSERT INTO `{name}` VALUES "
        end = self.written + budget
        line: list[str] = []
        size = len(prefix)
        for row in rows:
            row_size = len(row) + 1
            if line and size + row_size > NET_BUFFER_LENGTH:
                self.write(prefix + ",".join(line) + ";\n")
                line, size = [], len(prefix)
                if self.written >= end:
                    break
            line.append(row)
            size += row_size  # characters, not bytes: near enough for the line size
            self.rows[name] += 1
        else:
            if line:
                self.write(prefix + ",".join(line) + ";\n")
        self.write(f"/*!40000 ALTER TABLE `{name}` ENABLE KEYS */;\nUNLOCK TABLES;\n")


def _dates(rng: random.Random) -> tuple[str, str]:
    t = 1_550_000_000 + rng.randrange(170_000_000)
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t + 3600)),
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)),
    )


class RowSource:
    """Rows (already escaped) of each table, from pools of values built once; ids, dates and slugs vary."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.f = f = ContentFactory(rng)
        self.contents = [esc(f.post_content()) for _ in range(1500)]
        self.metas = [(esc(k), esc(v)) for k, v in (f.postmeta() for _ in range(6000))]
        self.options = [esc(f.option(i)) for i in range(400)]
        self.excerpts = [esc(f.text(1)) for _ in range(50)] + [""] * 200
        self.titles = [esc(t) for t in TITLES]
        self.serialized: Counter[str] = Counter()

    def options_table(self) -> Iterator[str]:
        rng, f = self.rng, self.f
        fixed = [
            ("siteurl", OLD),
            ("home", OLD),
            ("blogname", esc("Café 日本語 Blog 🎉")),
            ("blogdescription", esc("Just another WordPress site. L'été!")),
            ("permalink_structure", "/%year%/%monthnum%/%postname%/"),
            ("widget_block", esc(php_serialize({2: {"content": f.block()}, "_multiwidget": 1}))),
            ("sidebars_widgets", esc(php_serialize({"wp_inactive_widgets": [], "sidebar-1": ["block-2"]}))),
            (
                "recently_edited",
                esc(php_serialize([f"/var/www/html/wp-content/themes/t/{n}.php" for n in "ab"])),
            ),
        ]
        for i, (name, value) in enumerate(fixed, 1):
            if _SERIALIZED.match(value.encode()):
                self.serialized["wp_options"] += 1
            yield f"({i},'{name}','{value}','on')"
        names = ("widget_text", "theme_mods_twentytwentyfour", "_transient_feed_", "rewrite_rules_")
        for i in itertools.count(len(fixed) + 1):
            name = names[i % 4] + (str(i) if i % 4 >= 2 or i > 5 else "")
            self.serialized["wp_options"] += 1
            yield f"({i},'{name}','{rng.choice(self.options)}','{rng.choice(('on', 'off', 'auto'))}')"

    def postmeta_table(self, serialized_only: bool = False) -> Iterator[str]:
        metas = [m for m in self.metas if m[1][:2] in ("a:", "O:", "s:")] if serialized_only else self.metas
        for meta_id in itertools.count(1):
            key, value = self.rng.choice(metas)
            if value[:2] in ("a:", "O:", "s:"):
                self.serialized["wp_postmeta"] += 1
            yield f"({meta_id},{meta_id // 5 + 1},'{key}','{value}')"

    def posts_table(self) -> Iterator[str]:
        rng, f = self.rng, self.f
        kinds = ("post", "page", "attachment", "revision", "nav_menu_item")
        for post_id in itertools.count(1):
            kind = rng.choices(kinds, (30, 5, 25, 30, 10))[0]
            local, gmt = _dates(rng)
            name = f.slug()
            content = excerpt = mime = ""
            parent = 0
            guid = f"{OLD}/?p={post_id}"
            status = "publish"
            if kind in ("post", "page", "revision"):
                content, excerpt = rng.choice(self.contents), rng.choice(self.excerpts)
                if kind == "page":
                    guid = f"{OLD}/?page_id={post_id}"
                if kind == "revision":
                    parent, status = max(1, post_id - rng.randrange(1, 50)), "inherit"
                    name = f"{parent}-revision-v1"
            elif kind == "attachment":
                guid, mime, status = f"{OLD}/wp-content/uploads/{f.upload()[1]}", "image/jpeg", "inherit"
            yield (
                f"({post_id},1,'{local}','{gmt}','{content}','{rng.choice(self.titles)}','{excerpt}','{status}',"
                f"'open','closed','','{name}','','','{local}','{gmt}','',{parent},'{guid}',{post_id % 7},"
                f"'{kind}','{mime}',{rng.randrange(5)})"
            )

    @staticmethod
    def users_table() -> Iterator[str]:
        for i in range(1, 4):
            yield (
                f"({i},'user{i}','$P$Bxyz{i}abcdefghijklmnopqrstuv','user{i}','user{i}@example.com',"
                f"'{OLD}/author/user{i}/','2024-01-0{i} 10:00:00','',0,'{esc('Usér ' + str(i))}')"
            )

    @staticmethod
    def usermeta_table() -> Iterator[str]:
        n = 0
        for user in range(1, 4):
            for key, value in (
                ("nickname", f"user{user}"),
                ("wp_capabilities", php_serialize({"administrator": True})),
                ("wp_user_level", "10"),
                (
                    "session_tokens",
                    php_serialize({"abc": {"expiration": 1735689600, "ua": "Mozilla/5.0 'x'"}}),
                ),
                ("custom_avatar", php_serialize({"url": f"{OLD}/wp-content/uploads/avatar{user}.png"})),
            ):
                n += 1
                yield f"({n},{user},'{key}','{esc(value)}')"


def generate(path: Path, size_mb: int, seed: int, serialized: bool = False) -> dict[str, Any]:
    """Write the dump to ``path``; return its description. ``serialized``: options and serialized postmeta
    only, half and half (the serialized-dense case)."""
    target = size_mb * 1_000_000
    started = time.monotonic()
    rows = RowSource(seed)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb", buffering=16 << 20) as out:
        dump = DumpWriter(out)
        dump.write(HEADER)
        dump.table("wp_options", rows.options_table(), target * (50 if serialized else 5) // 100, 99999)
        dump.table(
            "wp_postmeta", rows.postmeta_table(serialized), target * (50 if serialized else 38) // 100, 999999
        )
        if not serialized:
            dump.table("wp_posts", rows.posts_table(), max(0, target - dump.written - 20000), 999999)
        dump.table("wp_usermeta", rows.usermeta_table(), 1 << 30, 16)
        dump.table("wp_users", rows.users_table(), 1 << 30, 4)
        dump.write(FOOTER)
    tmp.replace(path)
    return {
        "version": GENERATOR_VERSION,
        "size_mb": size_mb,
        "seed": seed,
        "serialized_only": serialized,
        "bytes": dump.written,
        "rows": dict(dump.rows),
        "serialized_fields": dict(rows.serialized),
        "generation_seconds": round(time.monotonic() - started, 1),
    }


def ensure_dump(bench_dir: Path, size_mb: int, seed: int, serialized: bool) -> tuple[Path, dict[str, Any]]:
    kind = "-serialized" if serialized else ""
    path = bench_dir / f"rewrite-dump-v{GENERATOR_VERSION}-{size_mb}mb-seed{seed}{kind}.sql"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size and meta.get("version") == GENERATOR_VERSION:
            print(f"Reusing {path}")
            return path, meta
    print(f"Generating {path} ({size_mb} MB) ...", flush=True)
    meta = generate(path, size_mb, seed, serialized)
    meta_path.write_text(json.dumps(meta, indent=2))
    print(f"  done in {meta['generation_seconds']} s: rows {meta['rows']}")
    return path, meta


# --------------------------------------------------------------------------------------------------------
# Running the tools
# --------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    max_rss_mb: float
    stderr: str


def engine_cmd() -> list[str]:
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    return [python, "-m", "wpclone.rewrite", OLD, NEW]


def engine_env(engine: str) -> dict[str, str]:
    """The environment of a run of one of this checkout's engines."""
    return {**os.environ, ENGINE_ENV: engine}


def sed_cmd() -> list[str]:
    return ["sed", *SED_SCRIPT]


# Runs in a small helper interpreter: a child forked from this (large) process would report this process's
# RSS as its own peak, since ru_maxrss survives fork and exec.
_MEASURE = """
import os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status), file=sys.stderr)
"""


def run(cmd: list[str], src: Path, dst: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """Run ``cmd`` with ``src`` on stdin; wall time and peak RSS (os.wait4) of the child."""
    with (
        src.open("rb") as stdin,
        dst.open("wb") if dst else open(os.devnull, "wb") as stdout,
        tempfile.TemporaryFile() as stderr,
    ):
        subprocess.run(
            [sys.executable, "-c", _MEASURE, *cmd],
            check=False,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
        stderr.seek(0)
        lines = stderr.read().decode(errors="replace").rstrip("\n").split("\n")
    try:
        seconds, max_rss_kb, code = lines[-1].split()
    except ValueError:
        sys.exit(f"Could not run {cmd[0]}:\n" + "\n".join(lines))
    err = "\n".join(lines[:-1])
    if int(code):
        sys.exit(f"{cmd[0]} failed with exit code {code}:\n{err}")
    return Run(float(seconds), int(max_rss_kb) / 1024, err)


def sed_env() -> dict[str, str]:
    # Byte semantics: the fastest (hardest) sed baseline, and no multibyte-locale surprises.
    return {**os.environ, "LC_ALL": "C"}


def check_sed_matches(src: Path, bench_dir: Path) -> tuple[int, int]:
    """Run sed on a sample and verify it replaced every plain and dump-escaped JSON needle."""
    sample = bench_dir / "sed-sample.sql"
    with src.open("rb") as f:
        data = f.read(8 << 20)
    data = data[: data.rfind(b"\n") + 1]
    sample.write_bytes(data)
    out = bench_dir / "sed-sample.out"
    run(sed_cmd(), sample, out, sed_env())
    result = out.read_bytes()
    sample.unlink()
    out.unlink()
    plain, escaped = data.count(OLD_BYTES), data.count(OLD_JSON_DUMP)
    ok = (
        plain > 0
        and escaped > 0
        and result.count(OLD_BYTES) == 0
        and result.count(OLD_JSON_DUMP) == 0
        and result.count(NEW_BYTES) == plain + data.count(NEW_BYTES)
        and result.count(NEW_JSON_DUMP) == escaped + data.count(NEW_JSON_DUMP)
    )
    if not ok:
        sys.exit(f"The sed expressions {SED_SCRIPT} do not do the expected replacements on the sample.")
    return plain, escaped


# --------------------------------------------------------------------------------------------------------
# Comparing outputs
# --------------------------------------------------------------------------------------------------------

CHECKED_TABLES = ("wp_postmeta", "wp_options")


# What is left of each form of OLD in a dump (as the dump escapes it), where the host ends; and sister links
# (OLD's host and port going on as another host or port). Written here, apart from the engine's own rule.
_ENDS = rb"(?![A-Za-z0-9_-]|\.[A-Za-z0-9]|:[0-9])"
_ENDS_URL = rb"(?![A-Za-z0-9_-]|\.[A-Za-z0-9]|:[0-9]|%3[Aa][0-9])"
FORMS_LEFT = {
    "http(s)://": re.compile(
        rb"source\.localhost:8080(?:(?<=http://source\.localhost:8080)|(?<=https://source\.localhost:8080))"
        + _ENDS
    ),
    "//": re.compile(
        rb"source\.localhost:8080(?<=//source\.localhost:8080)(?<!http://source\.localhost:8080)"
        rb"(?<!https://source\.localhost:8080)" + _ENDS
    ),
    "JSON": re.compile(rb"source\.localhost:8080(?<=\\\\/\\\\/source\.localhost:8080)" + _ENDS),
    "URL-encoded": re.compile(
        rb"source\.localhost(?:%3A8080(?<=%2F%2Fsource\.localhost%3A8080)|%3a8080(?<=%2f%2fsource\.localhost%3a8080))"
        + _ENDS_URL
    ),
}
SISTER = re.compile(rb"source\.localhost:8080(?=\.[A-Za-z0-9]|[0-9])")


@dataclass
class Comparison:
    lines: int = 0
    lines_differing: Counter[str] = field(default_factory=Counter)
    fields_differing: int = 0
    differing_serialized: int = 0
    differing_other: int = 0
    structure_mismatch: int = 0
    sample_index: int = 0
    # per output ("input", "ours", "sed"): what is left of each form of OLD, and sister links
    left: dict[str, Counter[str]] = field(
        default_factory=lambda: {k: Counter() for k in ("input", "ours", "sed")}
    )
    samples: dict[str, list[bytes]] = field(default_factory=lambda: {"input": [], "ours": [], "sed": []})


def _table_of(line: bytes) -> str:
    if line.startswith(b"INSERT INTO `"):
        return line[13 : line.index(b"`", 13)].decode()
    return "(other)"


def compare(src: Path, ours: Path, sed: Path, meta: dict[str, Any]) -> Comparison:
    """Line/field comparison of the two outputs, old-URL counts, and PHP samples of serialized fields."""
    cmp = Comparison()
    total = sum(meta.get("serialized_fields", {}).values()) or PHP_SAMPLE
    step = max(1, total // PHP_SAMPLE)
    with src.open("rb") as fi, ours.open("rb") as fo, sed.open("rb") as fs:
        for line_in, line_ours, line_sed in zip_longest(fi, fo, fs):
            cmp.lines += 1
            if line_in is None or line_ours is None or line_sed is None:
                cmp.structure_mismatch += 1
                continue
            for name, line in (("input", line_in), ("ours", line_ours), ("sed", line_sed)):
                for form, pattern in FORMS_LEFT.items():
                    cmp.left[name][form] += len(pattern.findall(line))
                cmp.left[name]["sister"] += len(SISTER.findall(line))
            table = _table_of(line_in)
            if line_ours != line_sed:
                cmp.lines_differing[table] += 1
            if line_ours != line_sed or table in CHECKED_TABLES:
                lines = (line_in, line_ours, line_sed)
                _compare_fields(cmp, lines, sample=table in CHECKED_TABLES, step=step)
    for name, values in cmp.samples.items():
        if len(values) > PHP_SAMPLE:
            cmp.samples[name] = [values[i * len(values) // PHP_SAMPLE] for i in range(PHP_SAMPLE)]
    return cmp


def _compare_fields(cmp: Comparison, lines: tuple[bytes, bytes, bytes], *, sample: bool, step: int) -> None:
    fields_in, fields_ours, fields_sed = (_LITERAL.findall(x) for x in lines)
    if not len(fields_in) == len(fields_ours) == len(fields_sed):
        cmp.structure_mismatch += 1
        return
    for body_in, body_ours, body_sed in zip(fields_in, fields_ours, fields_sed, strict=True):
        if body_ours != body_sed:
            cmp.fields_differing += 1
            if _SERIALIZED.match(body_ours):
                cmp.differing_serialized += 1
            else:
                cmp.differing_other += 1
        if sample and _SERIALIZED.match(body_in):
            if cmp.sample_index % step == 0:
                cmp.samples["input"].append(unescape(body_in))
                cmp.samples["ours"].append(unescape(body_ours))
                cmp.samples["sed"].append(unescape(body_sed))
            cmp.sample_index += 1


PHP_CHECK = r"""
$d = file_get_contents($argv[1]); $p = 0; $n = strlen($d); $ok = 0; $bad = [];
for ($i = 0; $p < $n; $i++) {
    $e = strpos($d, "\n", $p); $len = (int) substr($d, $p, $e - $p);
    $v = substr($d, $e + 1, $len); $p = $e + 1 + $len;
    $r = @unserialize($v, ['allowed_classes' => false]);
    if ($r === false && $v !== 'b:0;') { $bad[] = $i; } else { $ok++; }
}
echo json_encode(['ok' => $ok, 'bad' => $bad]);
"""


def php_check(values: list[bytes], bench_dir: Path) -> tuple[int, list[int]]:
    """How many values PHP unserialize accepts, and the indices of the rejected ones."""
    path = bench_dir / "php-sample.bin"
    path.write_bytes(b"".join(b"%d\n%s" % (len(v), v) for v in values))
    try:
        out = subprocess.run(["php", "-r", PHP_CHECK, str(path)], capture_output=True, check=True).stdout
    finally:
        path.unlink()
    result = json.loads(out)
    return int(result["ok"]), [int(i) for i in result["bad"]]


# --------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------


def state_dir() -> Path:
    return Path(os.environ.get("WPCLONE_STATE_DIR") or REPO_ROOT / ".local").resolve()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def load_dump(path: Path) -> tuple[Path, dict[str, Any]]:
    """An existing dump, with the description written next to it when it was generated (if any)."""
    meta_path = path.with_suffix(".json")
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta.setdefault("rows", "?")
    print(f"Using {path}")
    return path, meta


@dataclass
class DumpResult:
    """One dump's figures: median seconds, MB/s and ratio to sed per tool, peak RSS per engine."""

    label: str
    size: int
    seconds: dict[str, float]
    rate: dict[str, float]
    ratio: dict[str, float]
    peak_rss: dict[str, float]
    engines_identical: bool
    ours_valid: bool


def time_tools(
    src: Path, tools: dict[str, tuple[list[str], dict[str, str] | None]], rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, str]]:
    """Every tool on ``src``, alternating, ``rounds`` times: wall times, peak RSS, the engines' summaries."""
    times: dict[str, list[float]] = {name: [] for name in tools}
    rss: dict[str, list[float]] = {name: [] for name in tools}
    summaries: dict[str, str] = {}
    for i in range(rounds):
        line = []
        for name, (cmd, env) in tools.items():
            r = run(cmd, src, env=env)
            times[name].append(r.seconds)
            rss[name].append(r.max_rss_mb)
            if name != "sed":
                summaries[name] = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "(no summary)"
            line.append(f"{name} {r.seconds:.2f} s ({r.max_rss_mb:.1f} MiB)")
        print(f"round {i + 1}/{rounds}: {', '.join(line)}")
    return times, rss, summaries


def _counted(summary: str) -> str:
    """An engine's summary without what differs from run to run or engine to engine (name, time, RSS)."""
    return re.sub(
        r"^rewrite \([a-z]+ engine\): |, [0-9.]+ s \([0-9.]+ MB/s\), peak RSS [0-9.]+ MiB", "", summary
    )


def bench_dump(  # noqa: PLR0915
    label: str, src: Path, meta: dict[str, Any], args: argparse.Namespace, bench_dir: Path
) -> DumpResult:
    """Time the engines and sed on one dump, compare the engines' outputs whole and ours with sed's."""
    size = src.stat().st_size
    plain, escaped = check_sed_matches(src, bench_dir)
    print(
        f"sed check: on an 8 MB sample both expressions matched ({plain} plain, {escaped} JSON-escaped URLs)"
    )
    tools: dict[str, tuple[list[str], dict[str, str] | None]] = {
        engine: (engine_cmd(), engine_env(engine)) for engine in args.engines
    }
    if args.baseline:
        tools["baseline"] = (engine_cmd(), {**os.environ, "PYTHONPATH": args.baseline})
    tools["sed"] = (sed_cmd(), sed_env())
    times, rss, summaries = time_tools(src, tools, args.rounds)
    engines = [name for name in tools if name != "sed"]

    # One untimed run of each engine and of sed into files: the engines must agree byte for byte.
    outs = {name: bench_dir / f"out-{name}.sql" for name in (*args.engines, "sed")}
    for engine in args.engines:
        run(engine_cmd(), src, outs[engine], engine_env(engine))
    run(sed_cmd(), src, outs["sed"], sed_env())
    ours = args.engines[0]
    try:
        identical = all(filecmp.cmp(outs[ours], outs[e], shallow=False) for e in args.engines[1:])
        same_counts = len({_counted(summaries[e]) for e in args.engines}) == 1
        cmp = compare(src, outs[ours], outs["sed"], meta)
        out_sizes = outs[ours].stat().st_size, outs["sed"].stat().st_size
    finally:
        if not args.keep_outputs:
            for path in outs.values():
                path.unlink()
    php = {name: php_check(values, bench_dir) for name, values in cmp.samples.items()}

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: size / 1e6 / v for k, v in med.items()}
    ratio = {name: rate[name] / rate["sed"] for name in engines}
    peak = {name: max(rss[name]) for name in engines}
    width = 78
    print()
    print("=" * width)
    print(f"{label}: {OLD} -> {NEW} (a site pair: every form)")
    print(f"file           {src}")
    print(f"size           {size:,} bytes ({size / 1e6:.1f} MB); rows {meta['rows']}")
    print(f"rounds         {args.rounds} per tool, alternating; medians below (MB = 10^6 bytes)")
    print("-" * width)
    print(f"{'tool':<34}{'median s':>10}{'MB/s':>10}{'x sed':>8}{'peak RSS':>14}")
    for name in engines:
        label_ = f"{name} engine" if name in args.engines else f"baseline ({args.baseline})"[:33]
        print(f"{label_:<34}{med[name]:>10.2f}{rate[name]:>10.1f}{ratio[name]:>7.2f}x{peak[name]:>10.1f} MiB")
    print(f"{'sed (LC_ALL=C, 2 expressions)':<34}{med['sed']:>10.2f}{rate['sed']:>10.1f}{'1.00x':>8}")
    print("all runs (s)   " + "; ".join(f"{k} {', '.join(f'{t:.2f}' for t in v)}" for k, v in times.items()))
    for name in engines:
        print(f"{name} summary: {summaries[name]}")
    if len(args.engines) > 1:
        print(
            f"engines {' and '.join(args.engines)}: identical output {identical}, identical counts "
            f"{same_counts}   {verdict(identical and same_counts)}"
        )
    print("-" * width)
    print(f"output comparison of the {ours} engine with sed (one extra untimed run of each):")
    print(
        f"  output sizes   ours {out_sizes[0]:,} bytes, sed {out_sizes[1]:,} bytes "
        f"(differ by {out_sizes[0] - out_sizes[1]:+,})"
    )
    print(
        f"  lines          {cmp.lines:,} in all; differing: "
        + (", ".join(f"{t} {n}" for t, n in sorted(cmp.lines_differing.items())) or "none")
    )
    print(
        f"  fields differing {cmp.fields_differing:,}: {cmp.differing_serialized:,} serialized values "
        f"(sed left their lengths stale), {cmp.differing_other:,} other (forms sed does not cover, "
        "sister links sed changed)"
    )
    if cmp.structure_mismatch:
        print(f"  STRUCTURE MISMATCH on {cmp.structure_mismatch} lines (line or field counts differ)")
    print("  left of OLD, per form (host boundary respected), and sister links:")
    for form in (*FORMS_LEFT, "sister"):
        counts = ", ".join(f"{name} {cmp.left[name][form]:,}" for name in ("input", "ours", "sed"))
        print(f"    {form:<12} {counts}")
    n = len(cmp.samples["input"])
    print(f"PHP unserialize of {n} serialized values sampled from wp_postmeta/wp_options:")
    with_url = sum(NEW_BYTES in v or NEW_JSON.encode() in v for v in cmp.samples["ours"])
    print(f"  ({with_url} of them hold a rewritten URL)")
    for name in ("input", "ours", "sed"):
        ok, bad = php[name]
        print(f"  {name:<6} valid {ok:>5}, invalid {len(bad):>5}")
    if php["ours"][1]:
        i = php["ours"][1][0]
        print(f"  first invalid of ours: {cmp.samples['ours'][i][:300]!r}")
    nothing_left = not any(cmp.left["ours"][form] for form in FORMS_LEFT)
    sisters_kept = cmp.left["ours"]["sister"] == cmp.left["input"]["sister"]
    ours_valid = not php["ours"][1] and php["ours"][0] == n and not cmp.structure_mismatch
    ours_valid = ours_valid and nothing_left and sisters_kept
    print(
        "our output: sampled serialized values valid, nothing of OLD left in any form, sister links kept   "
        + verdict(ours_valid)
    )
    print("=" * width)
    print()
    return DumpResult(label, size, med, rate, ratio, peak, identical and same_counts, ours_valid)


def report(results: list[DumpResult], engines: list[str]) -> None:
    """Both dumps side by side: each engine's rate and ratio to sed, and the verdicts."""
    width = 78
    print("=" * width)
    print("Rewrite vs sed, side by side (medians; ratio = engine MB/s / sed MB/s in the same run)")
    print(
        f"{'dump':<26}{'MB':>7}"
        + "".join(f"{e + ' MB/s (x sed)':>22}" for e in engines)
        + f"{'sed MB/s':>10}"
    )
    for r in results:
        cells = "".join(f"{f'{r.rate[e]:.0f} ({r.ratio[e]:.2f}x)':>22}" for e in engines)
        print(f"{r.label:<26}{r.size / 1e6:>7.0f}{cells}{r.rate['sed']:>10.0f}")
    print("-" * width)
    ours = engines[0]
    worst = min(r.ratio[ours] for r in results)
    peak = max(r.peak_rss[e] for r in results for e in engines)
    print(
        f"speed {ours}/sed >= {SPEED_TARGET}x on every dump (moonshot {SPEED_MOONSHOT}x): worst "
        f"{worst:.2f}x   {verdict(worst >= SPEED_TARGET)}"
        + (" (moonshot reached)" if worst >= SPEED_MOONSHOT else "")
    )
    ok = verdict(peak < RSS_TARGET_MB)
    print(f"peak RSS of every engine run < {RSS_TARGET_MB:.0f} MB: {peak:.1f} MiB   {ok}")
    if len(engines) > 1:
        same = all(r.engines_identical for r in results)
        print(
            f"engines {' and '.join(engines)} identical (output and counts) on every dump   {verdict(same)}"
        )
    print(f"our output valid on every dump (see above)   {verdict(all(r.ours_valid for r in results))}")
    print("=" * width)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=220, help="size of each generated dump (default 220)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per tool (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--quick", action="store_true", help="20 MB dumps: a smoke test")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--serialized", action="store_true", help="only the serialized-dense dump")
    kind.add_argument("--bench-only", action="store_true", help="only the bench's own dump")
    kind.add_argument("--dump", type=Path, help="time this dump file instead of the generated ones")
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"the engines to time, the first compared with sed (default {','.join(ENGINES)})",
    )
    parser.add_argument(
        "--baseline", metavar="PLUGINS", help="also time the engine of another checkout (its plugins/ dir)"
    )
    parser.add_argument("--keep-outputs", action="store_true", help="keep the rewritten dumps")
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not args.engines or set(args.engines) - set(ENGINES):
        parser.error(f"--engines takes one or more of {', '.join(ENGINES)}")
    size_mb = 20 if args.quick else args.size_mb

    bench_dir = state_dir() / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    if args.dump:
        dumps = [("dump " + args.dump.name, *load_dump(args.dump))]
    else:
        kinds = [(False, "bench dump"), (True, "serialized-dense dump")]
        dumps = [
            (label, *ensure_dump(bench_dir, size_mb, args.seed, serialized))
            for serialized, label in kinds
            if not (args.serialized and not serialized) and not (args.bench_only and serialized)
        ]
    results = [bench_dump(label, src, meta, args, bench_dir) for label, src, meta in dumps]
    report(results, args.engines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
