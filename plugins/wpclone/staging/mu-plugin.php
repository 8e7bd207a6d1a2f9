<?php
/**
 * Plugin Name: wpclone staging safety
 * Description: This site is a short-lived staging clone made by wpclone: search engines are kept out, outgoing mail is blocked, no scheduled event runs, every screen says which clone this is and when it expires, and one-time login links (wpclone login) open its wp-admin.
 * Author: wpclone
 * Version: 1
 *
 * Written into wp-content/mu-plugins/ by wpclone when the clone is made (must-use: it cannot be deactivated
 * from the admin screens). The two values below are filled in by wpclone.staging.mu_plugin_php(); the
 * option wpclone_expires_at (written with the staging safety, wpclone.staging.expiry_option_sql) overrides
 * the expiry, so a new expiry needs no new plugin.
 */

if (!defined('ABSPATH') || defined('WPCLONE_STAGING_CLONE_ID')) {
	return;
}

define('WPCLONE_STAGING_CLONE_ID', '__WPCLONE_CLONE_ID__');
define('WPCLONE_STAGING_EXPIRES_AT', '__WPCLONE_EXPIRES_AT__'); // ISO 8601, UTC

/** When the clone expires (Unix seconds): the option wpclone_expires_at, else the value above. */
function wpclone_staging_expires_at(): int {
	$option = function_exists('get_option') ? get_option('wpclone_expires_at') : false;
	$when = strtotime(is_string($option) && $option !== '' ? $option : WPCLONE_STAGING_EXPIRES_AT);
	return $when === false ? 0 : $when;
}

/** The time left in words, as wpclone.summary.in_words says it: "expires in 2 h". */
function wpclone_staging_in_words(int $left): string {
	if ($left <= 0) {
		return 'expired';
	}
	if ($left < 90 * 60) {
		return sprintf('expires in %d min', max(1, (int) round($left / 60)));
	}
	if ($left < 48 * 3600) {
		return sprintf('expires in %d h', (int) round($left / 3600));
	}
	return sprintf('expires in %d d', (int) round($left / 86400));
}

/** The one line every notice shows (plain text; escape it where it is printed). */
function wpclone_staging_label(): string {
	$expires = wpclone_staging_expires_at();
	return sprintf(
		'Staging clone %s, %s (%s UTC)',
		WPCLONE_STAGING_CLONE_ID,
		wpclone_staging_in_words($expires - time()),
		gmdate('Y-m-d H:i', $expires)
	);
}

// -- search engines: a noindex header on every response WordPress makes, robots meta, no pings --------------

function wpclone_staging_robots_header(): void {
	if (!headers_sent()) {
		header('X-Robots-Tag: noindex, nofollow', true);
	}
}
// Now (covers wp-admin, wp-login.php, REST, admin-ajax, feeds and redirects) and again when the front end
// sends its headers (in case anything removed it in between).
wpclone_staging_robots_header();
add_action('send_headers', 'wpclone_staging_robots_header', PHP_INT_MAX);
add_action('login_init', 'wpclone_staging_robots_header');
add_action('admin_init', 'wpclone_staging_robots_header');

// -- no scheduled events: a clone never runs its source's jobs ---------------------------------------------
// DISABLE_WP_CRON keeps page views from spawning cron, not a request to wp-cron.php itself (a bot, an uptime
// checker, a visitor of a public Ingress), which would run every due event: the source's newsletters,
// payment syncs and imports. wp-cron.php defines DOING_CRON before it loads WordPress, and must-use plugins
// load before any event runs, so such a request ends here.
if (defined('DOING_CRON') && DOING_CRON) {
	if (!headers_sent()) {
		http_response_code(403);
		header('Content-Type: text/plain; charset=utf-8');
		header('Cache-Control: no-store');
	}
	echo "wpclone: scheduled events do not run on a staging clone.\n";
	exit;
}

// "Discourage search engines" stays on whatever the database says: robots meta noindex and a robots.txt that
// disallows everything, no ping services.
add_filter('pre_option_blog_public', static function () {
	return '0';
}, PHP_INT_MAX);
add_filter('wp_robots', 'wp_robots_no_robots', PHP_INT_MAX);
add_filter('pre_option_ping_sites', static function () {
	return '';
}, PHP_INT_MAX);
// No pingbacks or trackbacks to other sites about content published on the clone.
add_action('pre_ping', static function (&$links) {
	$links = [];
}, PHP_INT_MAX);
add_filter('pre_option_default_pingback_flag', static function () {
	return '0';
}, PHP_INT_MAX);

// -- no outgoing mail ---------------------------------------------------------------------------------------

/** Log one line instead of sending; never the message body or the recipients' addresses. */
function wpclone_staging_block_mail($atts): bool {
	$to = is_array($atts) ? ($atts['to'] ?? []) : [];
	$subject = is_array($atts) ? (string) ($atts['subject'] ?? '') : '';
	$count = is_array($to) ? count($to) : count(array_filter(explode(',', (string) $to)));
	error_log(sprintf(
		'wpclone staging clone %s: outgoing mail blocked (%d recipient(s), subject "%s")',
		WPCLONE_STAGING_CLONE_ID,
		$count,
		substr(preg_replace('/[\x00-\x1f\x7f]+/', ' ', $subject), 0, 200)
	));
	return false;
}
// WordPress 5.7+: short-circuit wp_mail() last, so no other filter can turn sending back on.
add_filter('pre_wp_mail', static function ($return, $atts) {
	return wpclone_staging_block_mail($atts);
}, PHP_INT_MAX, 2);
// Mailer plugins that replace the pluggable wp_mail() (API mailers) load after this file and check
// function_exists() first: ours wins, and blocks too.
if (!function_exists('wp_mail')) {
	function wp_mail($to, $subject, $message, $headers = '', $attachments = []) {
		return wpclone_staging_block_mail(['to' => $to, 'subject' => $subject]);
	}
}

// -- no automatic updates, no update pings about this URL -----------------------------------------------------

add_filter('automatic_updater_disabled', '__return_true', PHP_INT_MAX);
add_filter('auto_update_core', '__return_false', PHP_INT_MAX);
add_filter('auto_update_plugin', '__return_false', PHP_INT_MAX);
add_filter('auto_update_theme', '__return_false', PHP_INT_MAX);
add_action('init', static function () {
	remove_action('init', 'wp_schedule_update_checks');
}, 0);

// -- who is looking at what -----------------------------------------------------------------------------------

add_action('admin_bar_menu', static function ($admin_bar) {
	$admin_bar->add_node([
		'id' => 'wpclone-staging',
		'title' => esc_html(wpclone_staging_label()),
		'meta' => ['class' => 'wpclone-staging', 'title' => esc_attr(wpclone_staging_label())],
	]);
}, 0);

/** The admin bar in red on every screen that shows it (front end and wp-admin), the notice in bold. */
function wpclone_staging_bar_style(): void {
	if (!is_admin_bar_showing()) {
		return;
	}
	echo '<style id="wpclone-staging-bar">#wpadminbar{background:#b32d2e!important}'
		. '#wpadminbar .wpclone-staging>.ab-item{font-weight:600;color:#fff!important}</style>' . "\n";
}
add_action('wp_head', 'wpclone_staging_bar_style', PHP_INT_MAX);
add_action('admin_head', 'wpclone_staging_bar_style', PHP_INT_MAX);

/** "[STAGING] " before every title: the browser tab, the front end's <title>, wp-admin and the login page. */
function wpclone_staging_title($title) {
	$title = (string) $title;
	return strncmp($title, '[STAGING] ', 10) === 0 ? $title : '[STAGING] ' . $title;
}
add_filter('document_title', 'wpclone_staging_title', PHP_INT_MAX); // themes with title-tag support
add_filter('wp_title', 'wpclone_staging_title', PHP_INT_MAX); // themes that print wp_title()
add_filter('admin_title', 'wpclone_staging_title', PHP_INT_MAX);
add_filter('login_title', 'wpclone_staging_title', PHP_INT_MAX);

/** A small fixed notice for visitors who see no admin bar. */
function wpclone_staging_notice(): void {
	if (is_admin_bar_showing()) {
		return;
	}
	echo '<div id="wpclone-staging-notice" role="note" style="position:fixed;bottom:0;right:0;z-index:99999;'
		. 'padding:4px 10px;background:#b32d2e;color:#fff;font:13px/1.5 sans-serif;">'
		. esc_html(wpclone_staging_label()) . "</div>\n";
}
add_action('wp_footer', 'wpclone_staging_notice', PHP_INT_MAX);
add_action('login_footer', 'wpclone_staging_notice', PHP_INT_MAX);

// -- one-time login links (wpclone login; the protocol is described in wpclone/login.py) -----------------------
// The link is wp-login.php?action=wpclone-login#<token>: a GET gets a page that posts the fragment (which no
// request carries, so no access log sees it); the POST is checked against the hash stored in the option
// wpclone_login_<sha256 of the token>, whose value is "<expiry, Unix seconds>:<user login>".

/** A plain 403 page saying why the link does not log in. */
function wpclone_login_refuse(string $why): void {
	status_header(403);
	header('Content-Type: text/plain; charset=utf-8');
	echo 'wpclone: ', $why, ' Ask for a new link with `wpclone login ', WPCLONE_STAGING_CLONE_ID, "`.\n";
	exit;
}

/** The page at the link: it posts the link's fragment (the token) to the same address, once. */
function wpclone_login_form(): void {
	header('Content-Type: text/html; charset=utf-8');
	$action = esc_url(site_url('wp-login.php?action=wpclone-login', 'login_post'));
	echo '<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="robots" content="noindex, nofollow">'
		. '<meta name="referrer" content="no-referrer"><title>[STAGING] Logging in</title></head><body>'
		. '<form id="wpclone-login" method="post" action="' . $action . '">'
		. '<input type="hidden" name="token" value=""><noscript>This login link needs JavaScript.</noscript>'
		. '</form><script>(function () {'
		. 'var token = location.hash.slice(1), form = document.getElementById("wpclone-login");'
		. 'history.replaceState(null, "", location.pathname + location.search);'
		. 'form.token.value = token; form.submit();'
		. '})();</script></body></html>';
}

/** Log in with ``$token`` once: its option is deleted by the one request whose DELETE removed it. */
function wpclone_login_consume(string $token): void {
	global $wpdb;
	if (!preg_match('/^[A-Za-z0-9_-]{16,128}$/', $token)) {
		wpclone_login_refuse('this login link is not valid.');
	}
	$name = 'wpclone_login_' . hash('sha256', $token);
	$value = $wpdb->get_var($wpdb->prepare("SELECT option_value FROM {$wpdb->options} WHERE option_name = %s", $name));
	if ($value === null) {
		wpclone_login_refuse('this login link was used already, or is not valid.');
	}
	if ($wpdb->query($wpdb->prepare("DELETE FROM {$wpdb->options} WHERE option_name = %s", $name)) !== 1) {
		wpclone_login_refuse('this login link was used already.');
	}
	$parts = explode(':', (string) $value, 2);
	if (count($parts) !== 2 || (int) $parts[0] <= time()) {
		wpclone_login_refuse('this login link has expired (a link is valid for a few minutes).');
	}
	$user = get_user_by('login', $parts[1]);
	if (!$user || !user_can($user, 'manage_options')) {
		wpclone_login_refuse('the administrator this link was made for no longer exists.');
	}
	wp_set_current_user($user->ID);
	wp_set_auth_cookie($user->ID, false);
	wp_safe_redirect(admin_url());
	exit;
}

add_action('login_init', static function () {
	if (($_REQUEST['action'] ?? '') !== 'wpclone-login') {
		return;
	}
	nocache_headers();
	header('Cache-Control: no-store, no-cache, must-revalidate, max-age=0', true);
	header('Referrer-Policy: no-referrer');
	if (($_SERVER['REQUEST_METHOD'] ?? 'GET') !== 'POST') {
		wpclone_login_form();
		exit;
	}
	wpclone_login_consume((string) wp_unslash($_POST['token'] ?? ''));
}, 0);
