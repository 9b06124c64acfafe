#!/usr/bin/env bash
# Installs and starts what Unity needs on a Debian/Ubuntu machine: PostgreSQL and NATS with
# JetStream, from the OS packages, and OpenSSH, Pebble and Knot for the tests' stand-in servers,
# ACME directory and DNS server. Idempotent: a
# second run only checks that the services are up.
# Sourced by scripts/run.sh and scripts/test.sh; it sets DATABASE_URL and NATS_URL if unset.
set -euo pipefail

UNITY_PG_PASSWORD=${UNITY_PG_PASSWORD:-unity}
UNITY_NATS_PORT=${UNITY_NATS_PORT:-4222}
UNITY_STATE_DIR=${UNITY_STATE_DIR:-/var/lib/unity}

say() { printf 'provision: %s\n' "$*" >&2; }

need_packages=()
command -v pg_ctlcluster >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_packages+=(postgresql)
command -v nats-server >/dev/null 2>&1 || need_packages+=(nats-server)
# sshd stands for the servers Unity manages (tests, `unity bench distribute`); ssh and ssh-keygen
# check its work from outside.
[ -x /usr/sbin/sshd ] || need_packages+=(openssh-server)
command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || need_packages+=(openssh-client)
# Pebble is the ACME directory and knotd the DNS server (RFC 2136 updates, DNS-01) of the ACME
# tests and `unity bench certificates`; curl fetches Pebble's issuing root.
[ -x /usr/bin/pebble ] || need_packages+=(pebble)
[ -x /usr/sbin/knotd ] || need_packages+=(knot)
[ -x /usr/bin/kdig ] || need_packages+=(knot-dnsutils)
command -v curl >/dev/null 2>&1 || need_packages+=(curl)
# Node.js and npm install GraphiQL's assets, which the build embeds in the binary.
command -v npm >/dev/null 2>&1 || need_packages+=(nodejs npm)
if [ ${#need_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing ${need_packages[*]}; run as root (or install them) first"; exit 1
  fi
  say "installing ${need_packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

# wait_for DESCRIPTION COMMAND...: retry a check for up to 30 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  say "$what did not come up"; return 1
}

# PostgreSQL: the distribution's default cluster.
pg_version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk -v v="$pg_version" '$1==v && $2=="main"' | grep -q .; then
  pg_createcluster "$pg_version" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$pg_version" '$1==v && $2=="main" && $4=="online"' | grep -q .; then
  say "starting PostgreSQL $pg_version"
  pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
fi
pg_port=$(pg_lsclusters -h | awk -v v="$pg_version" '$1==v && $2=="main" {print $3}')
wait_for "PostgreSQL" su postgres -c "psql -p $pg_port -qtAc 'select 1'"
psql_admin() { su postgres -c "psql -p $pg_port -v ON_ERROR_STOP=1 -qtA $*"; }
# The application's role owns its database but is no superuser: it cannot bypass the
# append-only rules on the events table.
if [ "$(psql_admin "-c \"select count(*) from pg_roles where rolname='unity'\"")" = 0 ]; then
  psql_admin "-c \"CREATE ROLE unity LOGIN CREATEDB PASSWORD '$UNITY_PG_PASSWORD'\""
fi
if [ "$(psql_admin "-c \"select count(*) from pg_database where datname='unity'\"")" = 0 ]; then
  su postgres -c "createdb -p $pg_port -O unity unity"
fi
export DATABASE_URL=${DATABASE_URL:-postgres://unity:$UNITY_PG_PASSWORD@127.0.0.1:$pg_port/unity}

# NATS with JetStream, detached so it outlives this shell.
if ! (exec 3<>/dev/tcp/127.0.0.1/"$UNITY_NATS_PORT") 2>/dev/null; then
  say "starting nats-server with JetStream on 127.0.0.1:$UNITY_NATS_PORT"
  mkdir -p "$UNITY_STATE_DIR/nats"
  setsid nats-server -a 127.0.0.1 -p "$UNITY_NATS_PORT" -js -sd "$UNITY_STATE_DIR/nats" \
    >>"$UNITY_STATE_DIR/nats.log" 2>&1 </dev/null &
  wait_for "nats-server" bash -c "exec 3<>/dev/tcp/127.0.0.1/$UNITY_NATS_PORT"
fi
export NATS_URL=${NATS_URL:-nats://127.0.0.1:$UNITY_NATS_PORT}

# Cargo's build output stays outside the clone, so CI runs can reuse it.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/unity-target}
if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found: install a Rust toolchain (https://rustup.rs) first"; exit 1
fi

# GraphiQL's assets (embedded by api/build.rs) and the JavaScript clients the tests drive, from
# the committed lock file; again only when the lock file changed.
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  say "installing web/ packages (npm ci)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
