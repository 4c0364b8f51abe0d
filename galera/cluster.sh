#!/bin/bash
# A 3-node MariaDB Galera cluster on 127.0.0.1 for tests and the failover run (issue 10).
#
#   galera/cluster.sh start   DIR [BASE]  -> bootstraps node 1, joins 2 and 3 (rsync SST); prints the
#                                            multi-host xcap-wsgi URL (last line of stdout)
#   galera/cluster.sh stop    DIR         -> stops every node of DIR (SIGTERM, then SIGKILL)
#   galera/cluster.sh kill    DIR N       -> SIGKILL node N (a crash: no clean shutdown)
#   galera/cluster.sh term    DIR N       -> stops node N cleanly (SIGTERM, as for maintenance)
#   galera/cluster.sh restart DIR N       -> starts node N again; it rejoins (IST, or SST if needed)
#   galera/cluster.sh wait    DIR [SECS]  -> waits until all 3 nodes are Synced with cluster size 3
#   galera/cluster.sh status  DIR         -> one line per node: state, cluster size, last committed
#
# Node N (1..3) has its data in DIR/nodeN and listens on loopback only: SQL on BASE+4(N-1), Galera
# group communication on +1, IST on +2, rsync SST on +3 (BASE defaults to 34300). Small buffers (2-core
# machine). The servers run as the `mysql` user (the rsync SST daemon, started by the server, could not
# write a root-owned data folder), so DIR is handed to that user and must be reachable by it (e.g.
# a fresh folder under /tmp). The servers are ours: `stop` ends them by their pid files, nothing else.
set -euo pipefail

cmd=${1:?usage: cluster.sh start|stop|kill|restart|wait|status DIR [BASE|N]}
dir=${2:?usage: cluster.sh CMD DIR}
mariadbd_bin=$(command -v mariadbd || echo /usr/sbin/mariadbd)
provider=${GALERA_PROVIDER:-/usr/lib/galera/libgalera_smm.so}
db_user=${GALERA_DB_USER:-mysql}

base_of() { cat "$dir/base"; }
sql_port() { echo $(( $(base_of) + 4 * ($1 - 1) )); }
gcomm_port() { echo $(( $(base_of) + 4 * ($1 - 1) + 1 )); }
ist_port() { echo $(( $(base_of) + 4 * ($1 - 1) + 2 )); }
sst_port() { echo $(( $(base_of) + 4 * ($1 - 1) + 3 )); }
sock() { echo "$dir/node$1/mysqld.sock"; }
client() { local n=$1; shift; mariadb --no-defaults --socket="$(sock "$n")" -uroot "$@"; }

write_config() {
    local n=$1 node="$dir/node$1"
    mkdir -p "$node/data"
    cat >"$node/my.cnf" <<CNF
[mysqld]
datadir=$node/data
socket=$node/mysqld.sock
pid-file=$node/mysqld.pid
log-error=$node/error.log
port=$(sql_port "$n")
bind-address=127.0.0.1
user=$db_user
skip-name-resolve
max_connections=300
innodb_buffer_pool_size=32M
innodb_log_file_size=16M
innodb_flush_log_at_trx_commit=2
default_storage_engine=InnoDB
binlog_format=ROW
innodb_autoinc_lock_mode=2
wsrep_on=ON
wsrep_provider=$provider
wsrep_cluster_name=xcapw-galera
wsrep_cluster_address=gcomm://127.0.0.1:$(gcomm_port 1),127.0.0.1:$(gcomm_port 2),127.0.0.1:$(gcomm_port 3)
wsrep_node_name=node$n
wsrep_node_address=127.0.0.1:$(gcomm_port "$n")
wsrep_node_incoming_address=127.0.0.1:$(sql_port "$n")
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:$(sst_port "$n")
wsrep_slave_threads=2
wsrep_provider_options="gmcast.listen_addr=tcp://127.0.0.1:$(gcomm_port "$n");ist.recv_addr=127.0.0.1:$(ist_port "$n");gcache.size=32M;evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;evs.inactive_check_period=PT0.5S;evs.install_timeout=PT6S;pc.wait_prim_timeout=PT30S"
CNF
}

launch() {  # launch N [extra mariadbd args...]
    local n=$1; shift
    local node="$dir/node$n"
    : >"$node/started"
    "$mariadbd_bin" --defaults-file="$node/my.cnf" "$@" >>"$node/stdout.log" 2>&1 &
    echo $! >"$node/launcher.pid"
}

state_of() {  # prints "<local_state_comment> <cluster_size> <cluster_status> <ready>" or nothing
    client "$1" -N -B -e "SELECT MAX(IF(VARIABLE_NAME='WSREP_LOCAL_STATE_COMMENT',VARIABLE_VALUE,NULL)),
        MAX(IF(VARIABLE_NAME='WSREP_CLUSTER_SIZE',VARIABLE_VALUE,NULL)),
        MAX(IF(VARIABLE_NAME='WSREP_CLUSTER_STATUS',VARIABLE_VALUE,NULL)),
        MAX(IF(VARIABLE_NAME='WSREP_READY',VARIABLE_VALUE,NULL)),
        MAX(IF(VARIABLE_NAME='WSREP_LAST_COMMITTED',VARIABLE_VALUE,NULL))
        FROM information_schema.GLOBAL_STATUS" 2>/dev/null || true
}

wait_synced() {  # wait_synced N SECS: node N answers, is Synced and Primary
    local n=$1 secs=$2 i state
    for i in $(seq 1 $(( secs * 4 ))); do
        state=$(state_of "$n")
        if [[ "$state" == Synced*Primary*ON* ]]; then return 0; fi
        if ! kill -0 "$(cat "$dir/node$n/launcher.pid")" 2>/dev/null; then
            echo "node $n exited during start-up:" >&2; tail -n 40 "$dir/node$n/error.log" >&2; return 1
        fi
        sleep 0.25
    done
    echo "node $n not Synced after ${secs}s (state: ${state:-no answer}):" >&2
    tail -n 40 "$dir/node$n/error.log" >&2
    return 1
}

stop_node() {
    local n=$1 pid=""
    [ -f "$dir/node$n/launcher.pid" ] && pid=$(cat "$dir/node$n/launcher.pid")
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/node$n/launcher.pid"
}

case "$cmd" in
start)
    base=${3:-34300}
    mkdir -p "$dir"
    echo "$base" >"$dir/base"
    for n in 1 2 3; do write_config "$n"; done
    chown -R "$db_user" "$dir"
    if [ ! -d "$dir/node1/data/mysql" ]; then
        mariadb-install-db --defaults-file="$dir/node1/my.cnf" --user="$db_user" --auth-root-authentication-method=socket \
            --skip-test-db --wsrep-on=OFF >"$dir/node1/install.log" 2>&1 \
            || { cat "$dir/node1/install.log" >&2; exit 1; }
    fi
    launch 1 --wsrep-new-cluster
    wait_synced 1 60
    client 1 <<SQL
CREATE DATABASE IF NOT EXISTS kamailio CHARACTER SET latin1;
CREATE USER IF NOT EXISTS 'xcap'@'127.0.0.1' IDENTIFIED BY 'xcap';
CREATE USER IF NOT EXISTS 'xcap'@'localhost' IDENTIFIED BY 'xcap';
GRANT ALL PRIVILEGES ON *.* TO 'xcap'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'xcap'@'localhost';
SQL
    # Joiners one after the other: each takes a full SST (rsync) from a donor.
    for n in 2 3; do launch "$n"; wait_synced "$n" 120; done
    echo "mysql://xcap:xcap@127.0.0.1:$(sql_port 1),127.0.0.1:$(sql_port 2),127.0.0.1:$(sql_port 3)/kamailio"
    ;;
stop)
    # The last node to stop is the one that can bootstrap again; order does not matter for tests.
    for n in 3 2 1; do stop_node "$n"; done
    ;;
kill)
    n=${3:?node number}
    kill -9 "$(cat "$dir/node$n/launcher.pid")"
    for _ in $(seq 1 40); do kill -0 "$(cat "$dir/node$n/launcher.pid")" 2>/dev/null || break; sleep 0.25; done
    ;;
term)
    n=${3:?node number}
    stop_node "$n"
    ;;
restart)
    n=${3:?node number}
    if [ -f "$dir/node$n/launcher.pid" ] && kill -0 "$(cat "$dir/node$n/launcher.pid")" 2>/dev/null; then
        echo "node $n is running" >&2; exit 1
    fi
    launch "$n"
    wait_synced "$n" "${4:-120}"
    ;;
wait)
    secs=${3:-60}
    for n in 1 2 3; do
        wait_synced "$n" "$secs"
        state=$(state_of "$n")
        set -- $state
        [ "$2" = 3 ] || { echo "node $n sees cluster size $2" >&2; exit 1; }
    done
    ;;
status)
    for n in 1 2 3; do
        echo "node$n 127.0.0.1:$(sql_port "$n") $(state_of "$n" | tr '\t' ' ')"
    done
    ;;
*)
    echo "usage: cluster.sh start|stop|kill|term|restart|wait|status DIR [BASE|N]" >&2; exit 2 ;;
esac
