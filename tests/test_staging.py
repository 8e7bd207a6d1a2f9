"""Staging safety checked against PHP itself: phpass hashes, the must-use plugin, wp-config code, SQL."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from wpclone.errors import ConfigError
from wpclone.php import phpass_check, phpass_hash
from wpclone.staging import (
    MU_PLUGIN_FILENAME,
    STAGING_CONSTANTS,
    apply_staging_sql,
    expiry_option_sql,
    mu_plugin_php,
    staging_sql,
    wp_config_php,
    write_mu_plugin,
)
from wpclone.summary import in_words

PHPASS = "/usr/share/wordpress/wp-includes/class-phpass.php"
PASSWORDS = [
    "secret",
    "",
    "correct horse battery staple",
    "pässwörd ☃ 日本語 🔑",
    "it's \"quoted\" \\ and \\' back",
    "tab\tnewline\nnul\0end",
    "x" * 4096,
]


def _php(code: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["php", "-d", "display_errors=stderr", "-d", "error_reporting=-1", "-r", code],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _php_json(code: str, payload: object) -> Any:
    result = _php(code, json.dumps(payload))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return json.loads(result.stdout)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- phpass -------------------------------------------------------------------------------------------------


def test_php_accepts_our_hashes() -> None:
    hashes = [phpass_hash(p) for p in PASSWORDS]
    assert all(h.startswith("$P$B") and len(h) == 34 for h in hashes)  # B: 2**13 rounds, as WordPress
    assert len(set(hashes)) == len(hashes)
    checks = _php_json(
        f"require '{PHPASS}'; $h = new PasswordHash(8, true); $out = [];"
        "foreach (json_decode(stream_get_contents(STDIN), true) as [$p, $hash, $wrong]) {"
        "  $out[] = [$h->CheckPassword(base64_decode($p), $hash),"
        "            $h->CheckPassword(base64_decode($wrong), $hash)];"
        "} echo json_encode($out);",
        [[_b64(p), h, _b64(p + "x")] for p, h in zip(PASSWORDS, hashes, strict=True)],
    )
    assert checks == [[True, False]] * len(PASSWORDS)


def test_we_accept_php_hashes() -> None:
    php_hashes = _php_json(
        f"require '{PHPASS}'; $h = new PasswordHash(8, true); $out = [];"
        "foreach (json_decode(stream_get_contents(STDIN), true) as $p) {"
        "  $out[] = $h->HashPassword(base64_decode($p));"
        "}"
        "echo json_encode($out);",
        [_b64(p) for p in PASSWORDS],
    )
    for password, hashed in zip(PASSWORDS, php_hashes, strict=True):
        assert hashed.startswith("$P$B") and len(hashed) == 34
        assert phpass_check(password, hashed)
        assert not phpass_check(password + "x", hashed)
        assert not phpass_check(password[:-1] if password else "x", hashed)


@pytest.mark.parametrize("rounds_log2", [7, 8, 13, 16])
def test_same_salt_same_hash_as_php(rounds_log2: int) -> None:
    """Byte for byte what phpass's crypt_private computes for the same setting (salt and rounds)."""
    salts = [bytes(range(6)), b"\xff" * 6, b"\x00" * 6, bytes([0x3F, 0x40, 0xC0, 0x01, 0x80, 0x7F])]
    cases = [(p, s) for p in PASSWORDS[:5] for s in salts]
    ours = [phpass_hash(p, rounds_log2=rounds_log2, salt=s) for p, s in cases]
    theirs = _php_json(
        f"require '{PHPASS}'; $h = new PasswordHash(8, true); $out = [];"
        "foreach (json_decode(stream_get_contents(STDIN), true) as [$p, $s]) {"
        "  $setting = $h->gensalt_private(base64_decode($s));"
        f"  $setting[3] = $h->itoa64[{rounds_log2}];"
        "  $out[] = $h->crypt_private(base64_decode($p), $setting);"
        "} echo json_encode($out);",
        [[_b64(p), base64.b64encode(s).decode()] for p, s in cases],
    )
    assert ours == theirs


def test_phpass_refusals() -> None:
    good = phpass_hash("secret", rounds_log2=8)
    assert phpass_check("secret", good)
    assert not phpass_check("secret", good[:-1])
    assert not phpass_check("secret", good[:3] + "/" + good[4:])  # 2**0 rounds: refused by phpass too
    assert not phpass_check("secret", "$2y$10$" + "a" * 53)
    assert not phpass_check("secret", "5ebe2294ecd0e0f08eab7690d2a6ee69")  # legacy plain MD5
    assert not phpass_check("x" * 4097, phpass_hash("x" * 4096, rounds_log2=7)[:-1] + "x")
    for bad in (6, 31):
        with pytest.raises(ValueError, match="rounds_log2"):
            phpass_hash("secret", rounds_log2=bad)
    with pytest.raises(ValueError, match="salt"):
        phpass_hash("secret", salt=b"12345")
    with pytest.raises(ValueError, match="4096"):
        phpass_hash("é" * 2049)


# -- the must-use plugin ------------------------------------------------------------------------------------

# Just enough of WordPress to load the plugin and call what it registered.
_WP_STUBS = r"""
define('ABSPATH', '/nowhere/');
$GLOBALS['hooks'] = [];
function add_filter($hook, $cb, $prio = 10, $args = 1) { $GLOBALS['hooks'][$hook][] = $cb; return true; }
function add_action($hook, $cb, $prio = 10, $args = 1) { return add_filter($hook, $cb, $prio, $args); }
function remove_action($hook, $cb, $prio = 10) { return true; }
function esc_html($s) { return htmlspecialchars($s, ENT_QUOTES, 'UTF-8'); }
function esc_attr($s) { return htmlspecialchars($s, ENT_QUOTES, 'UTF-8'); }
function is_admin_bar_showing() { return $GLOBALS['bar_showing'] ?? false; }
function get_option($name) { return $GLOBALS['options'][$name] ?? false; }
function apply($hook, ...$args) {
    $r = null;
    foreach ($GLOBALS['hooks'][$hook] ?? [] as $cb) { $r = $cb(...$args); }
    return $r;
}
class Bar { public $nodes = []; function add_node($n) { $this->nodes[] = $n; } }
"""

_RUN_PLUGIN = (
    _WP_STUBS
    + r"""
require $argv[1];
ob_start(); apply('wp_footer'); $notice = ob_get_clean();
$bar = new Bar(); apply('admin_bar_menu', $bar);
$links = ['http://example.com/']; $cb = $GLOBALS['hooks']['pre_ping'][0]; $cb($links);
echo json_encode([
    'id' => WPCLONE_STAGING_CLONE_ID,
    'expires' => WPCLONE_STAGING_EXPIRES_AT,
    'notice' => $notice,
    'bar' => $bar->nodes[0]['title'],
    'blog_public' => apply('pre_option_blog_public', false),
    'pre_wp_mail' => apply(
        'pre_wp_mail', null, ['to' => ['a@example.com', 'b@example.com'], 'subject' => "Hi\nthere"]
    ),
    'wp_mail' => wp_mail('c@example.com', 'Direct', 'body'),
    'links' => $links,
    'hooks' => array_keys($GLOBALS['hooks']),
    'titles' => [apply('document_title', 'Home'), apply('admin_title', '[STAGING] Dashboard')],
    'words' => array_map('wpclone_staging_in_words', [-5, 0, 30, 89 * 60, 95 * 60, 47 * 3600, 50 * 3600]),
    'style_hidden' => (function () { ob_start(); wpclone_staging_bar_style(); return ob_get_clean(); })(),
    'style_shown' => (function () {
        $GLOBALS['bar_showing'] = true; ob_start(); wpclone_staging_bar_style(); return ob_get_clean();
    })(),
    'label_by_option' => (function () {
        $GLOBALS['options']['wpclone_expires_at'] = gmdate('Y-m-d\\TH:i:s\\Z', time() + 2 * 3600 + 30);
        return wpclone_staging_label();
    })(),
]);
"""
)

HOSTILE_IDS = [
    "c-0123456789abcdef",
    "x'; system('id'); //",
    "back\\slash\\",
    "a\\'b",
    "?></div><script>alert(1)</script><?php echo 1;",
    "ünï ☃\nnewline",
]


def _run_plugin(tmp_path: Path, clone_id: str, expires_at: datetime) -> subprocess.CompletedProcess[str]:
    plugin = write_mu_plugin(tmp_path, clone_id, expires_at)
    assert plugin == tmp_path / "mu-plugins" / MU_PLUGIN_FILENAME
    lint = subprocess.run(["php", "-l", str(plugin)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    return subprocess.run(
        ["php", "-d", "display_errors=stderr", "-d", "error_reporting=-1", "-r", _RUN_PLUGIN, str(plugin)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("clone_id", HOSTILE_IDS)
def test_mu_plugin_is_valid_php_and_values_are_inert(tmp_path: Path, clone_id: str) -> None:
    expires = datetime(2031, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    result = _run_plugin(tmp_path, clone_id, expires)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["id"] == clone_id
    assert out["expires"] == "2031-02-03T02:05:06Z"  # UTC
    days = in_words(expires - datetime.now(UTC))  # as PHP says it, unless a day turned in between
    assert days.startswith("expires in ") and days.endswith(" d")
    label = f"Staging clone {clone_id}, {days} (2031-02-03 02:05 UTC)"
    escaped = label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    escaped = escaped.replace("'", "&#039;")
    assert out["bar"] == escaped
    assert f">{escaped}</div>" in out["notice"]
    # The option the staging safety writes (a new expiry) wins over the plugin's own value.
    assert out["label_by_option"].startswith(f"Staging clone {clone_id}, expires in 2 h (")
    assert out["titles"] == ["[STAGING] Home", "[STAGING] Dashboard"]  # once, never twice
    # The same words as the run's note and the CLI (wpclone.summary.in_words).
    seconds = [-5, 0, 30, 89 * 60, 95 * 60, 47 * 3600, 50 * 3600]
    assert out["words"] == [in_words(timedelta(seconds=n)) for n in seconds]
    assert out["words"][2:] == [
        "expires in 1 min",
        "expires in 89 min",
        "expires in 2 h",
        "expires in 47 h",
        "expires in 2 d",
    ]
    assert out["style_hidden"] == "" and "#wpadminbar{background:#b32d2e!important}" in out["style_shown"]
    assert "<script>" not in out["notice"] and "<script>" not in out["bar"]
    assert out["blog_public"] == "0"
    assert out["pre_wp_mail"] is False and out["wp_mail"] is False
    assert out["links"] == []
    assert {"send_headers", "pre_wp_mail", "wp_robots", "admin_bar_menu", "login_footer"} <= set(out["hooks"])
    # One log line per blocked mail: the subject on one line, no addresses.
    blocked = [line for line in result.stderr.splitlines() if "outgoing mail blocked" in line]
    assert len(blocked) == 2, result.stderr
    assert '(2 recipient(s), subject "Hi there")' in blocked[0]
    assert '(1 recipient(s), subject "Direct")' in blocked[1]
    assert "example.com" not in result.stderr


def test_mu_plugin_needs_an_aware_expiry() -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        mu_plugin_php("c-1", datetime(2031, 1, 1))
    with pytest.raises(ConfigError, match="NUL"):
        mu_plugin_php("c-\0", datetime(2031, 1, 1, tzinfo=UTC))


def test_mu_plugin_does_nothing_outside_wordpress(tmp_path: Path) -> None:
    plugin = write_mu_plugin(tmp_path, "c-1", datetime(2031, 1, 1, tzinfo=UTC))
    result = subprocess.run(["php", str(plugin)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "")


# -- wp-config constants ------------------------------------------------------------------------------------


def test_wp_config_php_defines_exact_values() -> None:
    constants: dict[str, str | int | bool] = {
        **STAGING_CONSTANTS,
        "WPCLONE_QUOTE": "it's \"x\" \\' \\\\ end\\",
        "WPCLONE_MULTI": "ünï ☃\nline ?> <?php",
        "WPCLONE_INT": -42,
        "WPCLONE_EMPTY": "",
    }
    code = wp_config_php(constants)
    assert code.count("\ndefined('") == len(constants) - 1 and code.endswith(");\n")
    # As the WordPress image runs WORDPRESS_CONFIG_EXTRA: eval'd after it defined WP_DEBUG itself.
    result = _php(
        "define('WP_DEBUG', true); eval(stream_get_contents(STDIN));"
        f"echo json_encode(array_map('constant', {json.dumps(list(constants))}));",
        code,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert json.loads(result.stdout) == [True if k == "WP_DEBUG" else v for k, v in constants.items()]


@pytest.mark.parametrize("name", ["", "lower", "1X", "X-Y", "X;Y", "X'", "X Y", "É", "A" * 65])
def test_wp_config_php_refuses_bad_names(name: str) -> None:
    with pytest.raises(ConfigError, match="constant name"):
        wp_config_php({name: True})


def test_wp_config_php_refuses_bad_values() -> None:
    for value in (1.5, None, ["x"]):
        with pytest.raises(ConfigError, match="string, integer or boolean"):
            wp_config_php({"X": value})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="NUL"):
        wp_config_php({"X": "a\0b"})


def test_staging_constants() -> None:
    assert STAGING_CONSTANTS["WP_ENVIRONMENT_TYPE"] == "staging"
    assert STAGING_CONSTANTS["DISABLE_WP_CRON"] is True
    assert STAGING_CONSTANTS["AUTOMATIC_UPDATER_DISABLED"] is True
    with pytest.raises(TypeError):
        STAGING_CONSTANTS["WP_DEBUG"] = True  # type: ignore[index]


# -- the clone's database -----------------------------------------------------------------------------------

HASH = phpass_hash("a-fresh-password-123", rounds_log2=8)


@pytest.mark.parametrize(
    "prefix", ["", "wp-", "wp_;DROP TABLE x;", "wp`_", "wp_ ", "wp.x_", "ü_", "a" * 41, "wp_\n"]
)
def test_staging_sql_refuses_bad_prefixes(prefix: str) -> None:
    with pytest.raises(ConfigError, match="table prefix"):
        staging_sql(prefix, "admin", HASH)


def test_staging_sql_refuses_bad_user_and_hash() -> None:
    for user in ("", " admin", "x" * 61):
        with pytest.raises(ConfigError, match="admin user"):
            staging_sql("wp_", user, HASH)
    for hashed in ("secret", HASH[:-1], "$2y$10$" + "a" * 53, HASH + "'"):
        with pytest.raises(ConfigError, match="hash"):
            staging_sql("wp_", "admin", hashed)


def test_staging_sql_is_parameterised() -> None:
    statements = staging_sql("WP2_", "o'brien", HASH)
    text = " ".join(sql for sql, _ in statements)
    assert "o'brien" not in text and HASH not in text
    for sql, args in statements:
        assert sql.count("%s") == len(args)
        assert "`WP2_" in sql
    assert {"`WP2_options`", "`WP2_users`", "`WP2_usermeta`"} <= {
        word for sql, _ in statements for word in sql.split() if word.startswith("`")
    }
    assert ("blog_public", "0", "yes") in [args for _, args in statements]
    assert (HASH, "o'brien") in [args for _, args in statements]
    assert ("session_tokens",) in [args for _, args in statements]
    assert not any("wpclone_expires_at" in args for _, args in statements)  # no expiry given: none written
    expires = datetime(2031, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    with_expiry = staging_sql("WP2_", "o'brien", HASH, expires)
    assert with_expiry[:-1] == statements
    assert with_expiry[-1] == expiry_option_sql("WP2_", expires)
    assert with_expiry[-1][1] == ("wpclone_expires_at", "2031-02-03T02:05:06Z", "yes")
    assert "`WP2_options`" in with_expiry[-1][0]


class _FakeCursor:
    def __init__(self, conn: _FakeConn) -> None:
        self.conn = conn
        self.rowcount = 0

    def execute(self, sql: str, args: tuple[object, ...] = ()) -> None:
        self.conn.executed.append((sql, args))

    def fetchall(self) -> list[tuple[int]]:
        return [(7,)] if self.conn.user_exists else []

    def close(self) -> None:
        pass


class _FakeConn:
    def __init__(self, user_exists: bool) -> None:
        self.user_exists = user_exists
        self.executed: list[tuple[str, tuple[object, ...]]] = []
        self.calls: list[str] = []

    def cursor(self) -> _FakeCursor:
        return _FakeCursor(self)

    def commit(self) -> None:
        self.calls.append("commit")

    def rollback(self) -> None:
        self.calls.append("rollback")

    def close(self) -> None:
        self.calls.append("close")


def test_apply_staging_sql_on_a_connection(caplog: pytest.LogCaptureFixture) -> None:
    conn = _FakeConn(user_exists=True)
    password = "Fresh-password-1234567890"
    assert apply_staging_sql(lambda: conn, "wp_clone_x", "wp_", "admin", password) == 7
    assert conn.calls == ["commit", "close"]
    assert conn.executed[0] == ("USE `wp_clone_x`", ())
    (new_hash,) = [args[0] for sql, args in conn.executed if "user_pass" in sql]
    assert phpass_check(password, str(new_hash))
    assert password not in caplog.text and str(new_hash) not in caplog.text


def test_apply_staging_sql_refusals() -> None:
    conn = _FakeConn(user_exists=False)
    with pytest.raises(ConfigError, match="no user 'admin'"):
        apply_staging_sql(lambda: conn, "wp_clone_x", "wp_", "admin", "Fresh-password-1234567890")
    assert conn.calls == ["rollback", "close"]
    assert not any("UPDATE" in sql for sql, _ in conn.executed)
    for password in ("short", "has'quote-1234567", 'has"dq-123456789', "back\\slash-12345"):
        with pytest.raises(ConfigError, match="admin password"):
            apply_staging_sql(lambda: conn, "wp_clone_x", "wp_", "admin", password)
    with pytest.raises(ConfigError, match="database name"):
        apply_staging_sql(lambda: conn, "wp`x", "wp_", "admin", "Fresh-password-1234567890")


def test_apply_staging_sql_writes_the_expiry_the_notice_shows() -> None:
    conn = _FakeConn(user_exists=True)
    expires = datetime(2026, 12, 6, 7, 20, 5, 999, tzinfo=UTC)
    apply_staging_sql(
        lambda: conn, "wp_clone_x", "wp_", "admin", "Fresh-password-1234567890", expires_at=expires
    )
    written = [args for sql, args in conn.executed if "INSERT INTO `wp_options`" in sql]
    assert ("wpclone_expires_at", "2026-12-06T07:20:05Z", "yes") in written
    without = _FakeConn(user_exists=True)
    apply_staging_sql(lambda: without, "wp_clone_x", "wp_", "admin", "Fresh-password-1234567890")
    assert not any("wpclone_expires_at" in args for _, args in without.executed)
