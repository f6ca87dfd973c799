#!/usr/bin/env bash
# Opt-in long run of issue #8 item 6: the load tester's many-256 scenario (256 concurrent backup
# sessions) against a release `chunkyard serve` on loopback, for a bounded time; prints what ran
# and the server's peak RSS, and fails if any backup failed or the time ran out.
#
#   loadtest/long-run.sh                      # build release, scale 0.125 (256 x 8 MiB = 2 GiB)
#   SCALE=0.25 INFLIGHT=268435456 loadtest/long-run.sh
#
# Environment: SCALE (bytes per session = 64 MiB x SCALE), INFLIGHT (limits.max-inflight-bytes,
# unset = the built-in default), FSYNC (file|filesystem|none, default file), TIME_LIMIT (seconds,
# default 900), SERVER / LOADTEST (binaries; unset = build them with cargo --release),
# EXTRA_ARGS (more chunkyard-loadtest flags), KEEP=1 keeps the data directory.
# Not part of `cargo test`: it needs a release build and minutes of two cores.
set -euo pipefail

cd "$(dirname "$0")/.."
SCALE=${SCALE:-0.125}
FSYNC=${FSYNC:-file}
TIME_LIMIT=${TIME_LIMIT:-900}
PORT=${PORT:-28107}

if [[ -z "${SERVER:-}" || -z "${LOADTEST:-}" ]]; then
    cargo build --release --locked -p chunkyard --bin chunkyard -p chunkyard-loadtest
    target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    SERVER=${SERVER:-$target_dir/release/chunkyard}
    LOADTEST=${LOADTEST:-$target_dir/release/chunkyard-loadtest}
fi

data=$(mktemp -d /tmp/chunkyard-long-run.XXXXXX)
server_pid=
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$data"; else echo "data kept in $data"; fi
}
trap cleanup EXIT

{
    echo "listen = \"127.0.0.1:$PORT\""
    echo "data-dir = \"$data\""
    echo "[metrics]"
    echo "enabled = false"
    echo "[pipeline]"
    echo "fsync = \"$FSYNC\""
    if [[ -n "${INFLIGHT:-}" ]]; then
        echo "[limits]"
        echo "max-inflight-bytes = $INFLIGHT"
    fi
} > "$data/chunkyard.toml"
# Chunk directories appear on demand; creating all 65536 first takes minutes on a busy disk.
mkdir -p "$data/store/.chunks"

"$SERVER" serve --config "$data/chunkyard.toml" > "$data/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    [[ -s "$data/etc/admin-token.json" ]] && break
    sleep 0.1
done
token() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$data/etc/admin-token.json"; }
export PBS_REPOSITORY=$(token repository) PBS_FINGERPRINT=$(token fingerprint) PBS_PASSWORD=$(token value)

echo "many-256 at scale $SCALE, fsync=$FSYNC, max-inflight-bytes=${INFLIGHT:-default}, time limit ${TIME_LIMIT}s"
# shellcheck disable=SC2086
timeout "$TIME_LIMIT" "$LOADTEST" --scenario many-256 --scale "$SCALE" --server-pid "$server_pid" \
    --json ${EXTRA_ARGS:-} > "$data/report.json"
python3 - "$data/report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
cost = r["server_cost"]
print(f"sessions {r['sessions']}, errors {r['errors']}, original {r['original_bytes'] / 2**20:.0f} MiB, "
      f"wire {r['wire_bytes'] / 2**20:.0f} MiB in {r['elapsed_seconds']:.1f} s = {r['original_mb_per_s']:.0f} MB/s; "
      f"upload_chunk p99 {r['latency']['upload_chunk']['p99_ms']:.0f} ms; server CPU {cost['cpu_seconds']:.1f} s "
      f"({cost['cpu_seconds_per_gib']:.2f} s/GiB); server peak RSS {cost['peak_rss_bytes'] / 2**20:.0f} MiB")
sys.exit(1 if r["errors"] else 0)
EOF
