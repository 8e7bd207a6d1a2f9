<?php
/**
 * wpclone local runtime: install a registered site with wp_install() and give it the content real sites
 * hold (no wp-cli). Run by wpclone.local.seed:
 *
 *   php seed.php install <site>         installs WordPress (no-op when installed); admin password on stdin
 *   php seed.php content <site>         theme, permalinks, media, posts, pages, menu, widgets, options, comments
 *   php seed.php run <site> <script>    loads the installed site as an administrator and runs <script>
 *                                       (another site's content: tests/fixtures); stdin is the script's
 *
 * Environment: WPCLONE_SITES_DIR, WPCLONE_CORE_DIR (as for router.php); WPCLONE_SEED_TITLE for install;
 * WPCLONE_SEED_URL, when set, is the URL WordPress is installed and filled at instead of the site host's
 * (a site whose data names its public URL, served locally under another name).
 * The last line of stdout is a JSON summary. install and content are idempotent.
 */

if (PHP_SAPI !== 'cli') {
	exit(1);
}
require __DIR__ . '/site.php';

function seed_fail(string $message): void {
	fwrite(STDERR, "seed.php: $message\n");
	exit(1);
}

$seed_mode = $argv[1] ?? '';
$seed_name = $argv[2] ?? '';
$seed_script = $argv[3] ?? '';
if (!in_array($seed_mode, ['install', 'content', 'run'], true) || !preg_match(WPCLONE_SITE_NAME_RE, $seed_name)
	|| ($seed_mode === 'run') !== is_file($seed_script)) {
	seed_fail('usage: php seed.php install|content <site> | run <site> <script.php>');
}
$seed_cfg = wpclone_load_site((string) getenv('WPCLONE_SITES_DIR'), $seed_name);
if ($seed_cfg === null) {
	seed_fail("site $seed_name is not registered.");
}
if (getenv('WPCLONE_SEED_URL')) {
	$seed_cfg['url'] = (string) getenv('WPCLONE_SEED_URL');
}
$seed_admin_password = $seed_mode === 'install' ? trim((string) stream_get_contents(STDIN)) : '';

// Look like a request to the site, so WordPress computes its URLs as it would over HTTP.
$seed_url = rtrim($seed_cfg['url'], '/');
$seed_parts = parse_url($seed_url);
$_SERVER['HTTP_HOST'] = $seed_parts['host'] . (isset($seed_parts['port']) ? ':' . $seed_parts['port'] : '');
$_SERVER['SERVER_NAME'] = $seed_parts['host'];
$_SERVER['SERVER_PORT'] = (string) ($seed_parts['port'] ?? ($seed_parts['scheme'] === 'https' ? 443 : 80));
if ($seed_parts['scheme'] === 'https') {
	$_SERVER['HTTPS'] = 'on';
}
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REQUEST_METHOD'] = 'GET';
$_SERVER['SCRIPT_NAME'] = '/index.php';
$_SERVER['PHP_SELF'] = '/index.php';
$_SERVER['REMOTE_ADDR'] = '127.0.0.1';

wpclone_define_site($seed_cfg, (string) getenv('WPCLONE_CORE_DIR'));
unset($seed_cfg);
// Seeding sends no mail and makes no HTTP request (hooks pre-initialised before plugin.php loads).
$wp_filter['pre_wp_mail'][10]['wpclone_seed'] = ['function' => '__return_false', 'accepted_args' => 1];
$wp_filter['pre_http_request'][10]['wpclone_seed'] = [
	'function' => static fn () => new WP_Error('wpclone_seed', 'No HTTP requests while seeding.'),
	'accepted_args' => 1,
];

if ($seed_mode === 'install') {
	define('WP_INSTALLING', true);
	require ABSPATH . 'wp-load.php';
	require_once ABSPATH . 'wp-admin/includes/upgrade.php';
	if (is_blog_installed()) {
		echo json_encode(['installed' => false, 'reason' => 'already installed']), "\n";
		exit(0);
	}
	if (strlen($seed_admin_password) < 12) {
		seed_fail('the admin password on stdin is missing or too short.');
	}
	$title = getenv('WPCLONE_SEED_TITLE') ?: 'Northwind Field Station';
	$result = wp_install($title, 'admin', 'admin@example.com', true, '', $seed_admin_password);
	echo json_encode(['installed' => true, 'user_id' => $result['user_id']]), "\n";
	exit(0);
}

// ---- content -------------------------------------------------------------------------------------------
require ABSPATH . 'wp-load.php';
require_once ABSPATH . 'wp-admin/includes/image.php';
require_once ABSPATH . 'wp-admin/includes/file.php';
require_once ABSPATH . 'wp-admin/includes/media.php';
require_once ABSPATH . 'wp-admin/includes/nav-menu.php';

wp_set_current_user(1); // an administrator: unfiltered_html, so block markup is stored as written
if ($seed_mode === 'run') {
	require $seed_script;
	exit(0);
}
if (get_option('wpclone_seed_version')) {
	echo json_encode(['seeded' => false, 'reason' => 'already seeded', 'summary' => get_option('wpclone_seed_summary')]), "\n";
	exit(0);
}
$url = home_url();

/** A generated image (GD): a gradient with shapes and a caption, as PNG or JPEG bytes. */
function seed_image(int $w, int $h, array $from, array $to, string $label, string $type): string {
	$im = imagecreatetruecolor($w, $h);
	for ($y = 0; $y < $h; $y++) {
		$t = $y / max(1, $h - 1);
		$c = imagecolorallocate($im, (int) ($from[0] + ($to[0] - $from[0]) * $t),
			(int) ($from[1] + ($to[1] - $from[1]) * $t), (int) ($from[2] + ($to[2] - $from[2]) * $t));
		imageline($im, 0, $y, $w, $y, $c);
	}
	mt_srand(crc32($label));
	for ($i = 0; $i < 24; $i++) {
		$c = imagecolorallocatealpha($im, mt_rand(0, 255), mt_rand(0, 255), mt_rand(0, 255), 80);
		imagefilledellipse($im, mt_rand(0, $w), mt_rand(0, $h), mt_rand(20, $w / 3), mt_rand(20, $h / 3), $c);
	}
	$white = imagecolorallocate($im, 255, 255, 255);
	imagestring($im, 5, 24, $h - 40, $label, $white);
	ob_start();
	$type === 'png' ? imagepng($im, null, 6) : imagejpeg($im, null, 85);
	imagedestroy($im);
	return (string) ob_get_clean();
}

// Theme: the classic Twenty Twenty-One; switching moves widgets to inactive, so they are set afterwards.
if (get_stylesheet() !== 'twentytwentyone') {
	switch_theme('twentytwentyone');
}
update_option('permalink_structure', '/%postname%/');
update_option('blogdescription', 'Notes, photographs and data from the northern shore');
update_option('posts_per_page', 10);
update_option('default_comment_status', 'open');
flush_rewrite_rules(false);

// Media: real image files in uploads, attachment posts with metadata and generated sizes.
$images = [];
$specs = [
	['harbour-dawn', 1600, 1000, [20, 40, 90], [240, 160, 90], 'jpg'],
	['lichen-survey', 1200, 900, [30, 90, 40], [200, 230, 160], 'png'],
	['tide-chart', 1400, 800, [10, 20, 50], [90, 180, 220], 'png'],
	['station-logo', 512, 512, [120, 20, 40], [250, 210, 80], 'png'],
	['field-team', 1800, 1200, [60, 60, 60], [220, 200, 170], 'jpg'],
];
foreach ($specs as [$slug, $w, $h, $from, $to, $ext]) {
	$upload = wp_upload_bits("$slug.$ext", null, seed_image($w, $h, $from, $to, strtoupper($slug), $ext));
	if (!empty($upload['error'])) {
		seed_fail("cannot write upload $slug.$ext: {$upload['error']}");
	}
	$id = wp_insert_attachment([
		'post_title' => ucwords(str_replace('-', ' ', $slug)),
		'post_mime_type' => $ext === 'png' ? 'image/png' : 'image/jpeg',
		'post_status' => 'inherit',
		'guid' => $upload['url'],
		'post_content' => '',
		'post_excerpt' => 'Photograph: ' . str_replace('-', ' ', $slug),
	], $upload['file'], 0, true);
	if (is_wp_error($id)) {
		seed_fail('cannot insert attachment: ' . $id->get_error_message());
	}
	wp_update_attachment_metadata($id, wp_generate_attachment_metadata($id, $upload['file']));
	update_post_meta($id, '_wp_attachment_image_alt', 'The ' . str_replace('-', ' ', $slug));
	$large = wp_get_attachment_image_src($id, 'large');
	$images[$slug] = ['id' => $id, 'url' => $upload['url'], 'large' => $large ? $large[0] : $upload['url']];
}

// Pages first (posts link to them).
$pages = [];
foreach ([
	'about' => ['About the station', 'We have watched this shore since 1974.'],
	'contact' => ['Contact', 'Write to the station team; we answer within a week.'],
	'data' => ['Open data', 'Every survey we run is published here under an open licence.'],
] as $slug => [$title, $text]) {
	$img = $images['field-team'];
	$content = "<!-- wp:paragraph -->\n<p>$text See <a href=\"$url/\">the front page</a> or "
		. "<a href=\"$url/about/\">about us</a>.</p>\n<!-- /wp:paragraph -->\n\n"
		. '<!-- wp:image ' . wp_json_encode(['id' => $img['id'], 'sizeSlug' => 'large', 'linkDestination' => 'custom', 'url' => $img['large']]) . " -->\n"
		. "<figure class=\"wp-block-image size-large\"><a href=\"$url/data/\"><img src=\"{$img['large']}\" alt=\"The field team\" class=\"wp-image-{$img['id']}\"/></a></figure>\n"
		. "<!-- /wp:image -->";
	$pages[$slug] = wp_insert_post(wp_slash([
		'post_type' => 'page', 'post_status' => 'publish', 'post_name' => $slug,
		'post_title' => $title, 'post_content' => $content,
	]), true);
	if (is_wp_error($pages[$slug])) {
		seed_fail('cannot insert page: ' . $pages[$slug]->get_error_message());
	}
}

// Posts in block markup: plain URLs in HTML, JSON-escaped URLs in block attributes, page-builder meta.
$topics = ['Spring tides', 'Lichen on the north rocks', 'Counting eiders', 'A winter storm', 'Kelp forests',
	'The old lighthouse', 'Night sky survey', 'Sand martins return', 'Water temperature log', 'Seal pups'];
$posts = [];
$prev = null;
for ($i = 1; $i <= 20; $i++) {
	$topic = $topics[($i - 1) % count($topics)];
	$img = array_values($images)[$i % count($images)];
	$slug = sanitize_title("$topic $i");
	$link_prev = $prev ? "<a href=\"$url/$prev/\">the previous note</a>" : "<a href=\"$url/\">the front page</a>";
	$content = "<!-- wp:paragraph -->\n<p>Field note $i on " . strtolower($topic) . ". Read $link_prev, "
		. "the <a href=\"$url/data/\">open data</a> or <a href=\"$url/?p=" . ($pages['about']) . "\">about the station</a>.</p>\n<!-- /wp:paragraph -->\n\n"
		. '<!-- wp:image ' . wp_json_encode(['id' => $img['id'], 'sizeSlug' => 'large', 'linkDestination' => 'media', 'url' => $img['large']]) . " -->\n"
		. "<figure class=\"wp-block-image size-large\"><a href=\"{$img['url']}\"><img src=\"{$img['large']}\" alt=\"\" class=\"wp-image-{$img['id']}\"/></a><figcaption>Photo from the archive.</figcaption></figure>\n"
		. "<!-- /wp:image -->\n\n"
		. '<!-- wp:cover ' . wp_json_encode(['url' => $img['url'], 'id' => $img['id'], 'dimRatio' => 50, 'isDark' => true]) . " -->\n"
		. "<div class=\"wp-block-cover is-dark\"><span aria-hidden=\"true\" class=\"wp-block-cover__background has-background-dim\"></span>"
		. "<img class=\"wp-block-cover__image-background wp-image-{$img['id']}\" alt=\"\" src=\"{$img['url']}\" data-object-fit=\"cover\"/>"
		. "<div class=\"wp-block-cover__inner-container\"><!-- wp:paragraph {\"align\":\"center\"} -->\n<p class=\"has-text-align-center\">$topic</p>\n<!-- /wp:paragraph --></div></div>\n"
		. "<!-- /wp:cover -->\n\n"
		. '<!-- wp:buttons -->' . "\n<div class=\"wp-block-buttons\"><!-- wp:button -->\n"
		. "<div class=\"wp-block-button\"><a class=\"wp-block-button__link wp-element-button\" href=\"$url/contact/\">Send us a sighting</a></div>\n"
		. "<!-- /wp:button --></div>\n<!-- /wp:buttons -->\n\n"
		. '<!-- wp:wpclone/related ' . wp_json_encode(['links' => ["$url/about/", "$url/data/"], 'more' => "$url/"]) . ' /-->';
	$id = wp_insert_post(wp_slash([
		'post_type' => 'post', 'post_status' => 'publish', 'post_name' => $slug, 'post_title' => "$topic ($i)",
		'post_content' => $content, 'post_excerpt' => "Field note $i.",
		'post_date' => gmdate('Y-m-d H:i:s', time() - (21 - $i) * DAY_IN_SECONDS),
	]), true);
	if (is_wp_error($id)) {
		seed_fail('cannot insert post: ' . $id->get_error_message());
	}
	set_post_thumbnail($id, $img['id']);
	// A page builder's layout: a JSON string (URLs escaped as \/) inside a serialized array.
	update_post_meta($id, '_wpclone_builder_layout', wp_slash([
		'version' => 3,
		'layout' => wp_json_encode(['rows' => [['image' => $img['url'], 'link' => "$url/$slug/", 'title' => $topic]]]),
		'background' => $img['large'],
	]));
	// Elementor-like: the whole value is a JSON string.
	update_post_meta($id, '_elementor_edit_mode', 'builder');
	update_post_meta($id, '_elementor_data', wp_slash(wp_json_encode([[
		'id' => substr(md5($slug), 0, 7), 'elType' => 'section', 'elements' => [[
			'id' => substr(md5("w$slug"), 0, 7), 'elType' => 'widget', 'widgetType' => 'image',
			'settings' => ['image' => ['url' => $img['url'], 'id' => $img['id']], 'link' => ['url' => "$url/contact/"]],
		]],
	]])));
	if ($i % 2 === 0) {
		foreach ([1, 2] as $n) {
			wp_insert_comment([
				'comment_post_ID' => $id, 'comment_author' => "Visitor $n", 'comment_author_email' => "visitor$n@example.org",
				'comment_author_url' => "$url/about/", 'comment_approved' => 1, 'comment_author_IP' => '127.0.0.1',
				'comment_content' => "Lovely note. I wrote about it too: <a href=\"$url/$slug/\">$topic</a>.",
			]);
		}
	}
	$posts[] = $id;
	$prev = $slug;
}

// Navigation menus assigned to the theme's locations, with custom links to site URLs.
$menu_id = wp_create_nav_menu('Station menu');
if (is_wp_error($menu_id)) {
	seed_fail('cannot create menu: ' . $menu_id->get_error_message());
}
foreach ([['Station home', "$url/"], ['About the station', "$url/about/"], ['Open data sets', "$url/data/"],
	['Write to us', "$url/contact/"]] as $pos => [$title, $link]) {
	wp_update_nav_menu_item($menu_id, 0, [
		'menu-item-title' => $title, 'menu-item-url' => $link, 'menu-item-type' => 'custom',
		'menu-item-status' => 'publish', 'menu-item-position' => $pos + 1,
	]);
}
$footer_id = wp_create_nav_menu('Footer menu');
wp_update_nav_menu_item($footer_id, 0, [
	'menu-item-title' => 'Contact page', 'menu-item-object' => 'page', 'menu-item-object-id' => $pages['contact'],
	'menu-item-type' => 'post_type', 'menu-item-status' => 'publish',
]);
wp_update_nav_menu_item($footer_id, 0, [
	'menu-item-title' => 'Data licence', 'menu-item-url' => "$url/data/#licence", 'menu-item-type' => 'custom',
	'menu-item-status' => 'publish',
]);

// Theme mods (serialized option theme_mods_twentytwentyone): menu locations, logo, background image URL.
set_theme_mod('nav_menu_locations', ['primary' => $menu_id, 'footer' => $footer_id]);
set_theme_mod('custom_logo', $images['station-logo']['id']);
set_theme_mod('background_color', 'd1e4dd');
set_theme_mod('background_image', $images['tide-chart']['url']);
set_theme_mod('background_image_thumb', $images['tide-chart']['large']);
set_theme_mod('header_image', $images['harbour-dawn']['url']);

// Widgets in the theme's sidebar (sidebar-1): block widgets and a classic text widget, all serialized.
update_option('widget_block', [
	2 => ['content' => "<!-- wp:paragraph -->\n<p>New here? Read <a href=\"$url/about/\">about the field station</a>.</p>\n<!-- /wp:paragraph -->"],
	3 => ['content' => '<!-- wp:image ' . wp_json_encode(['id' => $images['lichen-survey']['id'], 'sizeSlug' => 'medium', 'url' => $images['lichen-survey']['url']]) . " -->\n"
		. "<figure class=\"wp-block-image size-medium\"><img src=\"{$images['lichen-survey']['url']}\" alt=\"Lichen survey\"/></figure>\n<!-- /wp:image -->"],
	'_multiwidget' => 1,
]);
update_option('widget_text', [
	2 => ['title' => 'Elsewhere', 'text' => "<a href=\"$url/data/\">Download the survey data</a>", 'filter' => true, 'visual' => true],
	'_multiwidget' => 1,
]);
update_option('sidebars_widgets', [
	'wp_inactive_widgets' => [],
	'sidebar-1' => ['block-2', 'block-3', 'text-2'],
	'array_version' => 3,
]);

// A plugin-style option: nested arrays with URLs, a string that is itself serialized, and JSON.
update_option('wpclone_station_settings', [
	'home' => "$url/",
	'endpoints' => ['data' => "$url/data/", 'feeds' => ["$url/feed/", "$url/comments/feed/"]],
	'legacy' => serialize(['logo' => $images['station-logo']['url'], 'links' => ["$url/about/"], 'count' => 3]),
	'json' => wp_json_encode(['api' => "$url/wp-json/", 'logo' => $images['station-logo']['url']]),
	'enabled' => true,
	'ratio' => 1.5,
]);

// Comments on a page too.
wp_insert_comment([
	'comment_post_ID' => $pages['about'], 'comment_author' => 'Former volunteer', 'comment_author_email' => 'old@example.org',
	'comment_author_url' => "$url/", 'comment_approved' => 1,
	'comment_content' => "I spent a summer here in 1998. <a href=\"$url/contact/\">Say hi to the team</a>.",
]);

$summary = [
	'posts' => $posts,
	'pages' => $pages,
	'images' => $images,
	'menu' => $menu_id,
	'url' => $url,
];
update_option('wpclone_seed_summary', $summary, false);
update_option('wpclone_seed_version', 1);
echo json_encode(['seeded' => true, 'summary' => $summary], JSON_UNESCAPED_SLASHES), "\n";
