#!/usr/bin/env bash
# Runs Unity: provisions PostgreSQL and NATS if needed, migrates, then `unity serve`.
# Extra arguments go to `unity serve` (for example --role api).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/provision.sh
export UNITY_MASTER_KEY_FILE=${UNITY_MASTER_KEY_FILE:-$UNITY_STATE_DIR/master.key}
cargo build --release --quiet
unity="$CARGO_TARGET_DIR/release/unity"
"$unity" migrate
exec "$unity" serve "$@"
