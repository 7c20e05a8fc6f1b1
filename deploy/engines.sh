#!/usr/bin/env bash
# Makes sure the distributed profile's engines run on loopback, installing and starting
# what is missing; used by deploy/test.sh (the tests need them) and deploy/local/up.
#
#   deploy/engines.sh [up|status|down|install-kafka]
#
# | engine | address | when missing |
# |---|---|---|
# | MariaDB | 127.0.0.1:3306 (root, empty password) | apt-get install mariadb-server, started as a daemon |
# | Redis | 127.0.0.1:6379 | apt-get install redis-server, started without persistence |
# | etcd | 127.0.0.1:2379 | apt-get install etcd-server etcd-client, data under $RINGCHAT_ENGINES_DIR |
# | Kafka protocol | 127.0.0.1:9092 | tansu 0.6 from crates.io (cargo install, ~10 min once), memory storage |
#
# An engine that already answers on its address is used as it is (a second `up` starts
# nothing). `install-kafka` only installs tansu when it is missing (deploy/test.sh runs it in
# the background while it builds). `down` stops only what this script started (etcd and tansu; MariaDB and Redis
# are left alone, other things on the machine may use them). Exits non-zero, saying why,
# when an engine cannot be had: the tests never skip one.
set -euo pipefail

ENGINES_DIR=${RINGCHAT_ENGINES_DIR:-/var/tmp/ringchat-engines}
TOOLS_DIR=${RINGCHAT_TOOLS_DIR:-/var/tmp/ringchat-tools}
TANSU_VERSION=0.6.0
TANSU=$TOOLS_DIR/bin/tansu
mkdir -p "$ENGINES_DIR"

say() { printf '  %-8s %s\n' "$1" "$2"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# open TCP port on 127.0.0.1?
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name port seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        listening "$2" && return 0
        sleep 0.1
    done
    die "$1 did not start listening on 127.0.0.1:$2 within $3 s (log: $ENGINES_DIR/$1.log)"
}

apt_install() {
    command -v apt-get >/dev/null || die "$* missing and no apt-get to install it: install it by hand"
    local sudo=
    [[ $(id -u) == 0 ]] || sudo=sudo
    say install "$* (apt-get)"
    # waits for the dpkg lock: deploy/test.sh may be installing chromium at the same time
    local apt="$sudo apt-get -o DPkg::Lock::Timeout=900"
    DEBIAN_FRONTEND=noninteractive $apt install -y -q "$@" >"$ENGINES_DIR/apt.log" 2>&1 \
        || { $apt update -q >>"$ENGINES_DIR/apt.log" 2>&1 \
             && DEBIAN_FRONTEND=noninteractive $apt install -y -q "$@" >>"$ENGINES_DIR/apt.log" 2>&1; } \
        || die "apt-get install $* failed (log: $ENGINES_DIR/apt.log)"
}

mariadb_up() {
    if listening 3306; then say mariadb "running on 127.0.0.1:3306"; return; fi
    [[ -x /usr/sbin/mariadbd ]] || apt_install mariadb-server
    say mariadb "starting"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_for mariadb 3306 60
}

redis_up() {
    if listening 6379; then say redis "running on 127.0.0.1:6379"; return; fi
    command -v redis-server >/dev/null || apt_install redis-server
    say redis "starting"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir "$ENGINES_DIR" --logfile "$ENGINES_DIR/redis.log"
    wait_for redis 6379 20
}

etcd_up() {
    if listening 2379; then say etcd "running on 127.0.0.1:2379"; return; fi
    command -v etcd >/dev/null || apt_install etcd-server etcd-client
    say etcd "starting (data: $ENGINES_DIR/etcd)"
    setsid nohup etcd --name ringchat --data-dir "$ENGINES_DIR/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster ringchat=http://127.0.0.1:2380 \
        >"$ENGINES_DIR/etcd.log" 2>&1 </dev/null &
    echo $! >"$ENGINES_DIR/etcd.pid"
    wait_for etcd 2379 30
}

tansu_install() {
    [[ -x $TANSU ]] && return
    command -v cargo >/dev/null || die "cargo is needed to install tansu (the Kafka-protocol broker)"
    say tansu "installing tansu $TANSU_VERSION from crates.io into $TOOLS_DIR (about 10 minutes, once)"
    cargo install tansu --version "$TANSU_VERSION" --features dynostore --locked \
        --root "$TOOLS_DIR" >"$ENGINES_DIR/tansu-install.log" 2>&1 \
        || die "cargo install tansu failed (log: $ENGINES_DIR/tansu-install.log)"
}

tansu_up() {
    if listening 9092; then say kafka "a broker runs on 127.0.0.1:9092"; return; fi
    tansu_install
    say kafka "starting tansu (memory storage)"
    setsid nohup "$TANSU" broker --storage-engine memory://tansu/ \
        --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
        >"$ENGINES_DIR/tansu.log" 2>&1 </dev/null &
    echo $! >"$ENGINES_DIR/tansu.pid"
    wait_for tansu 9092 30
}

stop_pid() { # name
    local f=$ENGINES_DIR/$1.pid
    [[ -f $f ]] || return 0
    local pid
    pid=$(cat "$f")
    if kill "$pid" 2>/dev/null; then say "$1" "stopped (pid $pid)"; fi
    rm -f "$f"
}

case ${1:-up} in
    up)
        mariadb_up
        redis_up
        etcd_up
        tansu_up
        ;;
    install-kafka)
        tansu_install
        say tansu "installed: $TANSU"
        ;;
    status)
        for e in mariadb:3306 redis:6379 etcd:2379 kafka:9092; do
            if listening "${e#*:}"; then say "${e%:*}" "up on 127.0.0.1:${e#*:}"; else say "${e%:*}" down; fi
        done
        ;;
    down)
        stop_pid tansu
        stop_pid etcd
        ;;
    *) die "usage: $0 [up|status|down|install-kafka]" ;;
esac
