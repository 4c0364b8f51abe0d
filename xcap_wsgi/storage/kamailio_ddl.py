"""Kamailio 5.6's MySQL DDL for the tables xcap-wsgi shares, copied verbatim.

Source: the Debian package ``kamailio-mysql-modules``/``kamailio`` 5.6.3, files
``/usr/share/kamailio/mysql/standard-create.sql`` (``version``) and
``/usr/share/kamailio/mysql/presence-create.sql`` (``xcap``), generated from Kamailio's
``src/lib/srdb1/schema/pr_xcap.xml``. No ENGINE or CHARSET clause: like kamdbctl, the tables
inherit the database defaults (latin1 / latin1_swedish_ci on a kamdbctl-made database).

``tests/test_mysql_store.py`` checks that these statements produce the same ``SHOW CREATE TABLE``
as the package files when those are installed.
"""

VERSION_TABLE_DDL = """CREATE TABLE `version` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `table_name` VARCHAR(32) NOT NULL,
    `table_version` INT UNSIGNED DEFAULT 0 NOT NULL,
    CONSTRAINT table_name_idx UNIQUE (`table_name`)
)"""

VERSION_ROW_VERSION = "INSERT INTO version (table_name, table_version) values ('version','1')"

XCAP_TABLE_DDL = """CREATE TABLE `xcap` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `username` VARCHAR(64) NOT NULL,
    `domain` VARCHAR(64) NOT NULL,
    `doc` MEDIUMBLOB NOT NULL,
    `doc_type` INT(11) NOT NULL,
    `etag` VARCHAR(128) NOT NULL,
    `source` INT(11) NOT NULL,
    `doc_uri` VARCHAR(255) NOT NULL,
    `port` INT(11) NOT NULL,
    CONSTRAINT doc_uri_idx UNIQUE (`doc_uri`)
)"""

XCAP_INDEXES_DDL = (
    "CREATE INDEX account_doc_type_idx ON xcap (`username`, `domain`, `doc_type`)",
    "CREATE INDEX account_doc_type_uri_idx ON xcap (`username`, `domain`, `doc_type`, `doc_uri`)",
    "CREATE INDEX account_doc_uri_idx ON xcap (`username`, `domain`, `doc_uri`)",
)

XCAP_VERSION_ROW = "INSERT INTO version (table_name, table_version) values ('xcap','4')"

#: Every column of the xcap table, in Kamailio's order.
XCAP_COLUMNS = ("id", "username", "domain", "doc", "doc_type", "etag", "source", "doc_uri", "port")
