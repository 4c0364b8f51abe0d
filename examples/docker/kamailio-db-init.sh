#!/bin/sh
# Create Kamailio's tables in $DB_NAME the way `kamdbctl create` does (the package's SQL files:
# standard, presence, rls), unless the version table is already there. Then `xcap-wsgi initdb`
# (compose service xcap-initdb) adds xcap-wsgi's optional rls-services side table.
set -eu
SQL=/usr/share/kamailio/mysql
mysql_() { mysql --host="$DB_HOST" --user="$DB_USER" --password="$DB_PASSWORD" "$DB_NAME" "$@"; }
if mysql_ -N -e "SHOW TABLES LIKE 'version'" | grep -q version; then
    echo "kamailio-db-init: Kamailio's tables are already in $DB_NAME"
    exit 0
fi
for f in standard-create.sql presence-create.sql rls-create.sql; do
    mysql_ <"$SQL/$f"
done
echo "kamailio-db-init: created Kamailio's standard, presence and rls tables in $DB_NAME"
