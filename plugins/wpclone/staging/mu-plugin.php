<?php
/**
 * Plugin Name: wpclone staging safety
 * Description: This site is a short-lived staging clone made by wpclone: search engines are kept out, outgoing mail is blocked, no scheduled event runs and every screen says which clone this is and when it expires.
 * Author: wpclone
 * Version: 1
 *
 * Written into wp-content/mu-plugins/ by wpclone when the clone is made (must-use: it cannot be deactivated
 * from the admin screens). The two values below are filled in by wpclone.staging.mu_plugin_php().
 */

if (!defined('ABSPATH') || defined('WPCLONE_STAGING_CLONE_ID')) {
	return;
}

define('WPCLONE_STAGING_CLONE_ID', '__WPCLONE_CLONE_ID__');
define('WPCLONE_STAGING_EXPIRES_AT', '__WPCLONE_EXPIRES_AT__'); // ISO 8601, UTC

/** The clone's expiry: the option wpclone keeps up to date when the clone is extended, else the constant. */
function wpclone_staging_expires_at(): string {
	$option = function_exists('get_option') ? (string) get_option('wpclone_expires_at', '') : '';
	return preg_match('/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/', $option) ? $option : WPCLONE_STAGING_EXPIRES_AT;
}

/** The one line every notice shows (plain text; escape it where it is printed). */
function wpclone_staging_label(): string {
	return sprintf('Staging clone %s, expires %s', WPCLONE_STAGING_CLONE_ID, wpclone_staging_expires_at());
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
		'parent' => 'top-secondary',
		'title' => esc_html(wpclone_staging_label()),
		'meta' => ['class' => 'wpclone-staging', 'title' => esc_attr(wpclone_staging_label())],
	]);
}, 0);

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
