<?php
/**
 * wpclone local site host: the router script of one `php -S` server that serves every registered site.
 *
 * The site is chosen by the Host header (<site>.localhost[:port]). /wp-content/* comes from the site's own
 * wp-content directory, core static files from the core directory (the document root: a symlink farm to
 * Debian's /usr/share/wordpress with our own wp-config.php), and PHP runs through WordPress with the
 * site's constants. Any other path goes to index.php, so pretty permalinks work. The host of a deleted clone
 * (<sites_dir>/.gone/<name>.json, written by sitehost.record_gone) answers 410 with a page saying so.
 *
 * This file runs at global scope: WordPress's files are required here, not inside a function, because
 * WordPress relies on file-scope variables being globals. Every variable of ours is prefixed wpclone_.
 */

require __DIR__ . '/site.php';

$wpclone_sites_dir = (string) getenv('WPCLONE_SITES_DIR');
$wpclone_core_dir = rtrim((string) getenv('WPCLONE_CORE_DIR'), '/');

function wpclone_plain(int $status, string $message): bool {
	http_response_code($status);
	header('Content-Type: text/plain; charset=utf-8');
	header('Cache-Control: no-store');
	echo $message, "\n";
	return true;
}

/**
 * A deleted clone's host (sitehost.record_gone wrote <sites_dir>/.gone/<name>.json): 410 and a plain page
 * saying when it was deleted or expired, instead of the developer's "no site is registered".
 */
function wpclone_gone_page(string $name, array $gone): bool {
	$at = strtotime((string) ($gone['gone_at'] ?? ''));
	$when = $at === false ? '' : ' at ' . gmdate('Y-m-d H:i', $at) . ' UTC';
	$what = ($gone['expired'] ?? false) ? 'expired and was deleted' : 'was deleted';
	$text = htmlspecialchars("This staging clone ($name) $what$when; ask for a new one.", ENT_QUOTES);
	http_response_code(410);
	header('Content-Type: text/html; charset=utf-8');
	header('Cache-Control: no-store');
	header('X-Robots-Tag: noindex, nofollow');
	echo "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\">"
		. "<title>Staging clone gone</title></head>\n<body style=\"font:16px/1.5 sans-serif;margin:3em\"><h1>Staging clone gone</h1>\n"
		. "<p>$text</p></body></html>\n";
	return true;
}

$wpclone_host = strtolower(preg_replace('/:\d+$/', '', (string) ($_SERVER['HTTP_HOST'] ?? '')));
$wpclone_path = (string) parse_url((string) ($_SERVER['REQUEST_URI'] ?? '/'), PHP_URL_PATH);
$wpclone_path = rawurldecode($wpclone_path === '' ? '/' : $wpclone_path);

if ($wpclone_path === '/__wpclone/health' && in_array($wpclone_host, ['localhost', '127.0.0.1'], true)) {
	return wpclone_plain(200, 'ok');
}
if (str_contains($wpclone_path, "\0") || preg_match('#(^|/)\.\.?(/|$)#', $wpclone_path)) {
	return wpclone_plain(400, 'wpclone: the request path is not valid.');
}

// A restore's preview: the same host name, served from the site's preview.json when the request carries
// that preview's private token (the worker checks a restored site this way before switching it in).
$wpclone_preview = (string) ($_SERVER['HTTP_X_WPCLONE_PREVIEW'] ?? '');
$wpclone_site = null;
if (preg_match('/^([a-z0-9][a-z0-9-]{0,38})\.localhost$/', $wpclone_host, $wpclone_m)) {
	try {
		$wpclone_site = wpclone_load_site($wpclone_sites_dir, $wpclone_m[1], $wpclone_preview === '' ? 'site' : 'preview');
	} catch (RuntimeException $wpclone_e) {
		error_log($wpclone_e->getMessage());
		return wpclone_plain(500, 'wpclone: the site config of ' . $wpclone_m[1] . ' is broken; see the site host log.');
	}
	if ($wpclone_preview !== '' && ($wpclone_site === null
		|| !hash_equals((string) ($wpclone_site['preview_token'] ?? ''), $wpclone_preview))) {
		return wpclone_plain(404, 'wpclone: no such preview.');
	}
}
if ($wpclone_site === null && preg_match('/^([a-z0-9][a-z0-9-]{0,38})\.localhost$/', $wpclone_host, $wpclone_m)) {
	$wpclone_gone = json_decode((string) @file_get_contents($wpclone_sites_dir . '/.gone/' . $wpclone_m[1] . '.json'), true);
	if (is_array($wpclone_gone)) {
		return wpclone_gone_page($wpclone_m[1], $wpclone_gone);
	}
}
if ($wpclone_site === null) {
	$wpclone_shown = preg_replace('/[^a-z0-9.\-]/', '?', substr($wpclone_host, 0, 100));
	return wpclone_plain(404, "wpclone: no site is registered for host '$wpclone_shown'; "
		. 'sites are served at http://<site>.localhost:<port>/.');
}

// Static files of the site's own wp-content: never executed, never outside the directory.
if (str_starts_with($wpclone_path, '/wp-content/')) {
	$wpclone_base = realpath($wpclone_site['content_dir']);
	$wpclone_file = realpath($wpclone_site['content_dir'] . substr($wpclone_path, strlen('/wp-content')));
	if ($wpclone_base === false || $wpclone_file === false || !is_file($wpclone_file)
		|| !str_starts_with($wpclone_file, $wpclone_base . '/')) {
		return wpclone_plain(404, 'wpclone: not found.');
	}
	if (preg_match('/\.(php\d?|phtml|phar)$/i', $wpclone_file)) {
		return wpclone_plain(403, 'wpclone: PHP files under wp-content are not served directly.');
	}
	$wpclone_types = [
		'css' => 'text/css', 'js' => 'application/javascript', 'json' => 'application/json',
		'png' => 'image/png', 'jpg' => 'image/jpeg', 'jpeg' => 'image/jpeg', 'gif' => 'image/gif',
		'webp' => 'image/webp', 'svg' => 'image/svg+xml', 'ico' => 'image/x-icon', 'avif' => 'image/avif',
		'woff' => 'font/woff', 'woff2' => 'font/woff2', 'ttf' => 'font/ttf', 'otf' => 'font/otf',
		'txt' => 'text/plain', 'html' => 'text/html', 'xml' => 'application/xml', 'pdf' => 'application/pdf',
		'mp4' => 'video/mp4', 'webm' => 'video/webm', 'mp3' => 'audio/mpeg', 'zip' => 'application/zip',
	];
	$wpclone_ext = strtolower(pathinfo($wpclone_file, PATHINFO_EXTENSION));
	$wpclone_type = $wpclone_types[$wpclone_ext] ?? (mime_content_type($wpclone_file) ?: 'application/octet-stream');
	$wpclone_mtime = filemtime($wpclone_file);
	header('Content-Type: ' . $wpclone_type);
	header('Content-Length: ' . filesize($wpclone_file));
	header('Last-Modified: ' . gmdate('D, d M Y H:i:s', $wpclone_mtime) . ' GMT');
	if (($_SERVER['REQUEST_METHOD'] ?? 'GET') !== 'HEAD') {
		readfile($wpclone_file);
	}
	return true;
}

// Which PHP script of core runs, and with which PATH_INFO.
$wpclone_script = null;
$wpclone_path_info = '';
if (preg_match('#^(/(?:[^/]+/)*[^/]+\.php)(/.*)?$#', $wpclone_path, $wpclone_m)) {
	if ($wpclone_m[1] === '/wp-config.php') {
		return wpclone_plain(404, 'wpclone: not found.');
	}
	if (is_file($wpclone_core_dir . $wpclone_m[1])) {
		$wpclone_script = $wpclone_m[1];
		$wpclone_path_info = $wpclone_m[2] ?? '';
	}
} elseif (is_dir($wpclone_core_dir . $wpclone_path) && is_file($wpclone_core_dir . rtrim($wpclone_path, '/') . '/index.php')) {
	if (!str_ends_with($wpclone_path, '/')) {
		$wpclone_query = (string) parse_url((string) $_SERVER['REQUEST_URI'], PHP_URL_QUERY);
		header('Location: ' . $wpclone_path . '/' . ($wpclone_query !== '' ? '?' . $wpclone_query : ''), true, 301);
		return true;
	}
	$wpclone_script = $wpclone_path . 'index.php';
} elseif (is_file($wpclone_core_dir . $wpclone_path)) {
	return false; // a core static file: the built-in server sends it from the document root
}
if ($wpclone_script === null) {
	$wpclone_script = '/index.php'; // permalinks and WordPress's own 404 page
}

wpclone_define_site($wpclone_site, $wpclone_core_dir);
// A fatal error names its site in the site host's log (which every site shares): the readiness check quotes
// the first such line of the site it waits for.
register_shutdown_function(static function (string $name): void {
	$error = error_get_last();
	if ($error !== null && in_array($error['type'], [E_ERROR, E_PARSE, E_CORE_ERROR, E_COMPILE_ERROR, E_RECOVERABLE_ERROR], true)) {
		error_log(sprintf('wpclone site %s: PHP Fatal error: %s in %s on line %d', $name,
			preg_replace('/\s+/', ' ', $error['message']), $error['file'], $error['line']));
	}
}, $wpclone_site['name']);
$_SERVER['DOCUMENT_ROOT'] = $wpclone_core_dir;
$_SERVER['SCRIPT_FILENAME'] = $wpclone_core_dir . $wpclone_script;
$_SERVER['SCRIPT_NAME'] = $wpclone_script;
$_SERVER['PHP_SELF'] = $wpclone_script . $wpclone_path_info;
if ($wpclone_path_info !== '') {
	$_SERVER['PATH_INFO'] = $wpclone_path_info;
} else {
	unset($_SERVER['PATH_INFO'], $_SERVER['ORIG_PATH_INFO']);
}
chdir(dirname($_SERVER['SCRIPT_FILENAME']));
$wpclone_require = $_SERVER['SCRIPT_FILENAME'];
unset($wpclone_site, $wpclone_preview, $wpclone_m, $wpclone_host, $wpclone_path, $wpclone_script, $wpclone_path_info, $wpclone_e);
require $wpclone_require;
return true;
