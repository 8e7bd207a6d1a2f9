"""The local runtime's stack: MariaDB and a PHP site host, all state under the repo's ``.local/``."""
