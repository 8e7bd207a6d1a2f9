"""copy-database's side of the URL rule without a database: aliases, and what the verification looks for."""

from __future__ import annotations

import os
import re

import pytest

from wpclone.errors import ConfigError
from wpclone.rewrite import FORMS
from wpclone.steps.__main__ import run
from wpclone.steps.copy_database import form_checks, parse_pairs, with_aliases

SOURCE, CLONE = "https://www.example.com", "https://qa.staging.example.net"


def test_aliases_become_site_pairs_to_the_clone() -> None:
    pairs = parse_pairs([SOURCE, CLONE])
    assert with_aliases(pairs, []) == pairs
    assert with_aliases(pairs, ["https://example.com", "http://old.example.org:8080", SOURCE]) == [
        (SOURCE, CLONE),
        ("https://example.com", CLONE),
        ("http://old.example.org:8080", CLONE),
    ]


@pytest.mark.parametrize(
    ("urls", "aliases", "message"),
    [
        ([SOURCE, CLONE], "example.com", "alias 'example.com' is not a site URL"),
        ([SOURCE, CLONE], "https://example.com/blog", "is not a site URL"),
        ([SOURCE, CLONE], CLONE, "is the clone's own URL"),
        (["https://www.example.com/blog", "https://qa.test/blog"], "https://example.com", "aliases need"),
    ],
)
def test_bad_aliases_are_one_sentence_before_anything_runs(
    urls: list[str], aliases: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(["copy-database", *urls, "--aliases", aliases])


def test_an_empty_alias_list_is_no_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    """The builders render ``--aliases`` from the configuration, empty when the source has none: the step
    then goes on to its environment (and says what is missing there)."""
    for name in [n for n in os.environ if n.startswith(("SOURCE_DB_", "TARGET_DB_"))]:
        monkeypatch.delenv(name)
    with pytest.raises(ConfigError, match="SOURCE_DB_PASSWORD"):
        run(["copy-database", SOURCE, CLONE, "--aliases", " , "])


def test_the_verification_looks_for_every_form_where_the_host_ends() -> None:
    checks = form_checks([(SOURCE, CLONE), ("https://example.com", CLONE), ("info@example.com", "x@y.test")])
    site = {(c.anchor, c.form) for c in checks if c.pattern}
    assert site == {(h, f) for h in ("www.example.com", "example.com") for f in FORMS if f != "explicit"}
    assert [c.anchor for c in checks if c.form == "explicit"] == ["info@example.com"]
    pattern = {(c.anchor, c.form): re.compile(c.pattern) for c in checks if c.pattern}

    def found(form: str, text: str) -> int:
        return len(pattern[("www.example.com", form)].findall(text))

    text = (
        "https://www.example.com/a https://www.example.com.au //www.example.com:8443 www.example.com "
        "http://www.example.com //www.example.com/b https:\\/\\/www.example.com\\/c "
        "u=https%3A%2F%2Fwww.example.com%2F v=%2f%2fwww.example.com%3a1"
    )
    assert [found(f, text) for f in FORMS if f != "explicit"] == [1, 1, 1, 1, 1]
    # The clone's URL holds none of them, so nothing is set aside before looking.
    assert all(not c.masks for c in checks)


def test_a_replacement_that_holds_a_form_is_set_aside() -> None:
    """An explicit pair that writes the site's own URL (strtr never rescans it): no leftover either."""
    checks = form_checks([("http://a.test", "https://a.test"), ("http://b.test", "http://a.test/b")])
    # Only the scheme changes: "//a.test" is no key, so it is not looked for.
    assert {c.form for c in checks if c.anchor == "a.test"} == {"http", "json", "url-encoded"}
    (http,) = [c for c in checks if c.anchor == "a.test" and c.form == "http"]
    assert http.masks == ("http://a.test/b",)
    explicit = [c for c in checks if c.form == "explicit"]
    assert [(c.anchor, c.masks) for c in explicit] == [
        ("http://b.test", ()),
        ("http:\\/\\/b.test", ()),
    ]
