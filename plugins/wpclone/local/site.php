<?php
/**
 * wpclone local runtime: load one site's config and define WordPress's constants from it.
 *
 * Shared by router.php (HTTP, one request = one site chosen by Host header) and seed.php (CLI).
 * A site is <sites_dir>/<name>/ with site.json (public settings), secrets.json (0600: salts) and the
 * database password in the file named by site.json's db_password_file.
 */

const WPCLONE_SITE_NAME_RE = '/^[a-z0-9][a-z0-9-]{0,38}$/';
const WPCLONE_SALT_KEYS = [
	'AUTH_KEY', 'SECURE_AUTH_KEY', 'LOGGED_IN_KEY', 'NONCE_KEY',
	'AUTH_SALT', 'SECURE_AUTH_SALT', 'LOGGED_IN_SALT', 'NONCE_SALT',
];

/**
 * Read a site's config; returns null when no such site is registered. $variant 'preview' reads the site's
 * restore preview (preview.json: the same site with another database and wp-content, checked before a
 * restore is switched in) instead of site.json.
 */
function wpclone_load_site(string $sites_dir, string $name, string $variant = 'site'): ?array {
	if (!preg_match(WPCLONE_SITE_NAME_RE, $name) || !in_array($variant, ['site', 'preview'], true)) {
		return null;
	}
	$dir = rtrim($sites_dir, '/') . '/' . $name;
	$raw = @file_get_contents($dir . '/' . $variant . '.json');
	if ($raw === false) {
		return null;
	}
	$cfg = json_decode($raw, true);
	if (!is_array($cfg)) {
		throw new RuntimeException("wpclone: $dir/site.json is not valid JSON.");
	}
	$secrets = json_decode((string) @file_get_contents($dir . '/secrets.json'), true);
	if (!is_array($secrets)) {
		throw new RuntimeException("wpclone: $dir/secrets.json is missing or not valid JSON.");
	}
	$password = @file_get_contents($cfg['db_password_file']);
	if ($password === false) {
		throw new RuntimeException("wpclone: cannot read the database password file of site $name.");
	}
	$cfg['dir'] = $dir;
	$cfg['content_dir'] = rtrim((string) ($cfg['content_dir'] ?? '') ?: $dir . '/wp-content', '/');
	$cfg['db_password'] = trim($password);
	$cfg['salts'] = $secrets['salts'] ?? [];
	return $cfg;
}

/** Define ABSPATH, DB_*, URLs, content dir, salts and the optional constants for one site. */
function wpclone_define_site(array $cfg, string $core_dir): void {
	$url = rtrim($cfg['url'], '/');
	$constants = [
		'WPCLONE_SITE' => $cfg['name'],
		'WPCLONE_TABLE_PREFIX' => $cfg['table_prefix'],
		'ABSPATH' => rtrim($core_dir, '/') . '/',
		'DB_NAME' => $cfg['db_name'],
		'DB_USER' => $cfg['db_user'],
		'DB_PASSWORD' => $cfg['db_password'],
		'DB_HOST' => $cfg['db_host'] . ':' . $cfg['db_port'],
		'DB_CHARSET' => 'utf8mb4',
		'DB_COLLATE' => '',
		'WP_HOME' => $url,
		'WP_SITEURL' => $url,
		'WP_CONTENT_DIR' => $cfg['content_dir'],
		'WP_CONTENT_URL' => $url . '/wp-content',
		// Core comes from the Debian package: it is updated by apt, never by WordPress itself.
		'AUTOMATIC_UPDATER_DISABLED' => true,
		'WP_AUTO_UPDATE_CORE' => false,
	];
	// The local stack is a sandbox: WordPress may call itself and other *.localhost sites, never the
	// internet (update checks from wp-cron would otherwise hang for their 30 s timeout on an offline
	// machine). A site's own constants may override both.
	$defaults = [
		'WP_HTTP_BLOCK_EXTERNAL' => true,
		'WP_ACCESSIBLE_HOSTS' => 'localhost,*.localhost',
	];
	foreach (WPCLONE_SALT_KEYS as $key) {
		if (!isset($cfg['salts'][$key]) || strlen($cfg['salts'][$key]) < 32) {
			throw new RuntimeException("wpclone: site {$cfg['name']} has no $key salt; re-register it.");
		}
		$constants[$key] = $cfg['salts'][$key];
	}
	if (!empty($cfg['environment_type'])) {
		$constants['WP_ENVIRONMENT_TYPE'] = $cfg['environment_type'];
	}
	if (!empty($cfg['disable_wp_cron'])) {
		$constants['DISABLE_WP_CRON'] = true;
	}
	foreach (($cfg['constants'] ?? []) as $key => $value) {
		if (preg_match('/^[A-Z][A-Z0-9_]{0,63}$/', (string) $key) && !isset($constants[$key])) {
			$constants[$key] = $value;
		}
	}
	$constants += $defaults;
	foreach ($constants as $key => $value) {
		if (!defined($key)) {
			define($key, $value);
		}
	}
	// The built-in server has no mod_rewrite, but the router sends every non-file path to index.php,
	// so pretty permalinks work: tell WordPress (hooks may be pre-initialised before plugin.php loads).
	$GLOBALS['wp_filter']['got_url_rewrite'][10]['wpclone'] = [
		'function' => '__return_true',
		'accepted_args' => 1,
	];
}
