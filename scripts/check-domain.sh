#!/usr/bin/env bash
# The domain is pure: no IO, no async, no clock and no ids of its own (ARCHITECTURE.md). Fails if
# unity-domain depends on a runtime, a database, a web or GraphQL crate, or if its non-test code
# reads the clock or makes random or time-based ids.
set -euo pipefail
cd "$(dirname "$0")/.."
deps=$(cargo tree -p unity-domain -e normal --prefix none --offline 2>/dev/null || cargo tree -p unity-domain -e normal --prefix none)
if bad=$(grep -E '^(tokio|sqlx|actix[-a-z]*|juniper[-a-z]*|async-nats|russh|reqwest|hyper) ' <<<"$deps"); then
  echo "unity-domain must not depend on: $bad" >&2
  exit 1
fi
if bad=$(grep -rnE 'Utc::now|SystemTime::now|Instant::now|now_v7|new_v4|thread_rng|OsRng' domain/src --include=*.rs | grep -v '/tests.rs:'); then
  echo "unity-domain makes its own time or ids (they must arrive in commands):" >&2
  echo "$bad" >&2
  exit 1
fi
