#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and NATS (provisioned if needed).
# Extra arguments go to `cargo test` (for example a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/provision.sh
# What only the tests need: Chromium (GraphiQL offline), promtool (package prometheus, /metrics in
# the classic format), the monitoring plugins, Prometheus' Python client (its OpenMetrics parser)
# and Python's gql.
test_packages=()
[ -x /usr/bin/chromium ] || test_packages+=(chromium)
command -v promtool >/dev/null 2>&1 || test_packages+=(prometheus)
# The real Nagios plugins the checks tests run over SSH.
[ -x /usr/lib/nagios/plugins/check_disk ] || test_packages+=(monitoring-plugins-basic)
if [ ${#test_packages[@]} -gt 0 ]; then
  say "installing ${test_packages[*]} for the tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${test_packages[@]}" >/dev/null
fi
python3 -c 'import prometheus_client, gql, websockets' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    'prometheus-client==0.21.1' 'gql[websockets]==3.5.3'
# Tests create a database each, from a migrated template, as the unprivileged `unity` role; only
# the tamper tests use the superuser below, to do what an attacker with the database would.
if [ "$(psql_admin "-c \"select count(*) from pg_roles where rolname='unity_test_admin'\"")" = 0 ]; then
  psql_admin "-c \"CREATE ROLE unity_test_admin LOGIN SUPERUSER PASSWORD 'unity_test_admin'\""
fi
export UNITY_TEST_DATABASE_URL=${UNITY_TEST_DATABASE_URL:-postgres://unity:$UNITY_PG_PASSWORD@127.0.0.1:$pg_port/postgres}
export UNITY_TEST_SUPERUSER_URL=${UNITY_TEST_SUPERUSER_URL:-postgres://unity_test_admin:unity_test_admin@127.0.0.1:$pg_port/postgres}
export UNITY_FIXTURES=${UNITY_FIXTURES:-$(cd .. && pwd)/shared/fixtures}
cargo test --workspace "$@"
