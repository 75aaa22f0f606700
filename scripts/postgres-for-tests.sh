#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests and bench/, in a folder of its own.
#   bash scripts/postgres-for-tests.sh install        Debian's postgresql, if missing (needs root)
#   eval "$(bash scripts/postgres-for-tests.sh start)"
#                                                     initdb + start in a new folder under /tmp;
#                                                     exports XEDULLM_TEST_POSTGRES_URL and _DIR
#   bash scripts/postgres-for-tests.sh restart DIR    stop and start again (fault tests)
#   bash scripts/postgres-for-tests.sh stop DIR       stop (DIR stays; remove it yourself)
# It runs as an unprivileged user (nobody when started as root), listens only on 127.0.0.1 on a
# free port, and needs a password (scram-sha-256), so tests see a password they must never leak.
# XEDULLM_PG_FSYNC=on keeps fsync on (bench/); tests leave it off, their data is thrown away.
set -euo pipefail
# The unprivileged owner may not be allowed into the caller's folder (a clone under /root).
cd /tmp

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

install() {
  [ -n "$(pg_bin)" ] && return 0
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  [ -n "$(pg_bin)" ]
}

start() {
  local dir bin port password
  bin="$(pg_bin)"
  [ -n "$bin" ] || { echo "PostgreSQL is not installed: bash $0 install" >&2; exit 3; }
  # Its own folder, so the unprivileged owner can reach it whatever the caller's umask.
  dir="$(mktemp -d /tmp/xedullm-pg-XXXXXX)"
  chmod 755 "$dir"
  [ "$(id -u)" -eq 0 ] && chown nobody "$dir"
  password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  (umask 077; printf '%s\n' "$password" > "$dir/pw")
  [ "$(id -u)" -eq 0 ] && chown nobody "$dir/pw"
  as_owner "$bin/initdb" -D "$dir/data" -U xedullm --auth=scram-sha-256 --pwfile="$dir/pw" \
    -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
  rm -f "$dir/pw"
  cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = ${XEDULLM_PG_FSYNC:-off}
synchronous_commit = ${XEDULLM_PG_FSYNC:-off}
full_page_writes = ${XEDULLM_PG_FSYNC:-off}
EOF
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
  echo "export XEDULLM_TEST_POSTGRES_URL=postgresql://xedullm:$password@127.0.0.1:$port/postgres"
  echo "export XEDULLM_TEST_POSTGRES_DIR=$dir"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  restart) as_owner "$(pg_bin)/pg_ctl" -D "$2/data" -l "$2/server.log" -m fast -w restart >/dev/null ;;
  stop) as_owner "$(pg_bin)/pg_ctl" -D "$2/data" -m fast -w stop >/dev/null ;;
  *) echo "usage: $0 install | start | restart DIR | stop DIR" >&2; exit 2 ;;
esac
