#!/bin/bash
# Start / stop a private MariaDB for the tests (loopback only, its own data folder).
#
#   .ci/mariadb.sh start DIR [PORT]   -> prints the XCAP_TEST_MYSQL_URL to use (last line of stdout)
#   .ci/mariadb.sh stop DIR
#
# The server runs as root with --user=root, listens on 127.0.0.1:PORT (default 33306) and on DIR/mysqld.sock.
# It creates a latin1 database `kamailio` (as kamdbctl does) and a user xcap/xcap with all privileges, because
# the test fixtures create and drop their own databases. MARIADBD_EXTRA_ARGS (words) go to mariadbd,
# e.g. the TLS certificate options of tests/test_mysql_tls.py.
set -euo pipefail

cmd=${1:?usage: mariadb.sh start|stop DIR [PORT]}
dir=${2:?usage: mariadb.sh start|stop DIR [PORT]}
port=${3:-33306}

mariadbd_bin=$(command -v mariadbd || echo /usr/sbin/mariadbd)

case "$cmd" in
start)
    mkdir -p "$dir"
    if [ ! -d "$dir/data/mysql" ]; then
        mariadb-install-db --datadir="$dir/data" --user=root --auth-root-authentication-method=socket \
            --skip-test-db >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; exit 1; }
    fi
    "$mariadbd_bin" --no-defaults --datadir="$dir/data" --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
        --port="$port" --bind-address=127.0.0.1 --user=root --skip-name-resolve \
        --log-error="$dir/error.log" --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
        --max-connections=200 --innodb-flush-log-at-trx-commit=2 ${MARIADBD_EXTRA_ARGS:-} >/dev/null 2>&1 &
    echo $! >"$dir/mysqld.launcher.pid"
    for _ in $(seq 1 120); do
        if mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1; then
            break
        fi
        if ! kill -0 "$(cat "$dir/mysqld.launcher.pid")" 2>/dev/null; then
            echo "mariadbd exited during start-up:" >&2; tail -n 30 "$dir/error.log" >&2; exit 1
        fi
        sleep 0.5
    done
    mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS kamailio CHARACTER SET latin1;
CREATE USER IF NOT EXISTS 'xcap'@'127.0.0.1' IDENTIFIED BY 'xcap';
CREATE USER IF NOT EXISTS 'xcap'@'localhost' IDENTIFIED BY 'xcap';
GRANT ALL PRIVILEGES ON *.* TO 'xcap'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'xcap'@'localhost';
FLUSH PRIVILEGES;
SQL
    echo "mysql://xcap:xcap@127.0.0.1:$port/kamailio"
    ;;
stop)
    if [ -f "$dir/mysqld.pid" ]; then
        pid=$(cat "$dir/mysqld.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    ;;
*)
    echo "usage: mariadb.sh start|stop DIR [PORT]" >&2; exit 2 ;;
esac
