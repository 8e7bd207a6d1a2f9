<?php
/**
 * wpclone local runtime: the wp-config.php of the core directory (a symlink farm to Debian's WordPress).
 *
 * Every constant was already defined from the site's config by router.php or seed.php (see site.php);
 * Debian's own /usr/share/wordpress/wp-config.php, which reads /etc/wordpress, is never used.
 */

if (!defined('WPCLONE_SITE')) {
	http_response_code(500);
	exit("wpclone: WordPress was loaded without a site config.\n");
}
$table_prefix = WPCLONE_TABLE_PREFIX;

require_once ABSPATH . 'wp-settings.php';
