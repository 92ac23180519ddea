# Shared helpers for Kiln's scripts: installing what they need and running private copies of Redis,
# Postgres and nginx without touching the system-wide services. Sourced, not executed.

KILN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KILN_PACKAGES=(redis-server postgresql nginx chromium chromium-headless-shell fonts-liberation curl ca-certificates procps dnsmasq-base pebble)

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages [PKG...]: installs the Debian packages named (by default every one Kiln needs), if
# any is missing.
ensure_packages() {
  local missing=() wanted=("$@")
  [ ${#wanted[@]} -gt 0 ] || wanted=("${KILN_PACKAGES[@]}")
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -q >/dev/null
    # policy-rc.d keeps the packages from starting their system-wide services.
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
      || { as_root rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed"; }
    as_root rm -f /usr/sbin/policy-rc.d
  fi
  command -v cargo >/dev/null || die "cargo is not on PATH: install the Rust toolchain (rustup) first"
}

# node_ok: Node.js 18 or newer and npm are on PATH.
node_ok() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    && [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -ge 18 ]
}

# ensure_node WHY: Node.js 18 or newer and npm, Debian's unless some other source's are there already
# (NodeSource's brings its own npm, which Debian's npm package would conflict with).
ensure_node() {
  node_ok || ensure_packages nodejs npm
  node_ok || die "$1 need Node.js 18 or newer and npm; found node $(node --version 2>/dev/null || echo none)"
}

# ensure_venv VENV REQUIREMENTS WHAT CHECK...: a venv at VENV holding the pinned REQUIREMENTS (WHAT
# names them in messages), made with Debian's own Python (so that a pyenv or conda python3 earlier on
# PATH does not matter) and made anew whenever the requirements file changes or CHECK (a command of
# the venv's bin/ and its arguments) fails in it.
ensure_venv() {
  local venv=$1 requirements=$2 what=$3; shift 3
  local stamp; stamp=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ "$(cat "$venv/.kiln-requirements" 2>/dev/null)" = "$stamp" ] && "$venv/bin/$1" "${@:2}" >/dev/null 2>&1; then
    return 0
  fi
  log "installing $what into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  /usr/bin/python3 -m venv "$venv" || die "creating the venv $venv failed"
  # Old packages built from source make pip print deprecation notices: not ours to act on.
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-virtualenv \
    -r "$requirements" 2> >(grep -v DEPRECATION >&2) || die "installing $what from $requirements failed"
  "$venv/bin/$1" "${@:2}" >/dev/null 2>&1 || die "$what from $requirements does not run ($*)"
  echo "$stamp" >"$venv/.kiln-requirements"
}

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
  echo "$dir"
}

# Runs a command as the owner of the Postgres data (Postgres refuses to run as root).
# Runs from / so that a working directory the postgres user may not enter does not matter.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

wait_http() { # url seconds
  local url=$1 deadline=$((SECONDS + ${2:-30}))
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

wait_tcp() { # port seconds
  local port=$1 deadline=$((SECONDS + ${2:-30}))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# start_redis DIR PORT: a private redis-server without persistence, daemonised, pid in DIR.
start_redis() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" >/dev/null
  wait_tcp "$port" 15 || die "redis-server did not start on port $port (see $dir/redis.log)"
}

stop_redis() { # DIR
  [ -f "$1/redis.pid" ] && kill "$(cat "$1/redis.pid")" 2>/dev/null; rm -f "$1/redis.pid"; true
}

# start_postgres DIR PORT: a private cluster (created on first use) listening on 127.0.0.1:PORT.
start_postgres() {
  local dir=$1 port=$2 bin
  bin=$(pg_bin)
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$dir"
    as_pg test -x "$bin/initdb" -a -w "$dir" \
      || die "the postgres user cannot run $bin/initdb or write $dir: every directory above them must be readable by other users (chmod o+rx)"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null \
      || die "initdb failed in $dir/data"
  fi
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null \
    || die "postgres did not start (see $dir/postgres.log)"
}

stop_postgres() { # DIR
  local bin; bin=$(pg_bin)
  [ -f "$1/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1; true
}

# start_edge DIR LISTEN GATEWAY [TLS_LISTEN [CERT_DIR]]: nginx from nginx/kiln.conf.template,
# daemonised; HTTPS on TLS_LISTEN (default 127.0.0.1:8443) with the certificates in CERT_DIR (default
# DIR/certs, where `kiln-acme sync` writes them).
start_edge() {
  local dir=$1 listen=$2 gateway=$3 tls_listen=${4:-127.0.0.1:8443} cert_dir=${5:-$1/certs}
  mkdir -p "$dir" "$cert_dir"
  sed -e "s|\${KILN_EDGE_LISTEN}|$listen|g" -e "s|\${KILN_GATEWAY_ADDR}|$gateway|g" \
      -e "s|\${KILN_EDGE_TLS_LISTEN}|$tls_listen|g" -e "s|\${KILN_EDGE_CERT_DIR}|$cert_dir|g" \
      -e "s|\${KILN_NGINX_DIR}|$KILN_ROOT/nginx|g" -e "s|\${KILN_EDGE_RUNTIME_DIR}|$dir|g" \
      "$KILN_ROOT/nginx/kiln.conf.template" > "$dir/nginx.conf"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -t -q || die "the edge's nginx.conf is invalid"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" || die "nginx did not start (see $dir/error.log)"
}

stop_edge() { # DIR
  [ -f "$1/nginx.pid" ] && kill -QUIT "$(cat "$1/nginx.pid")" 2>/dev/null; true
}
