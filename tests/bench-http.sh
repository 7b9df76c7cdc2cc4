#!/usr/bin/env bash
# The built-in HTTP mode as an edge: wrk with 16, 64 and 256 connections on the `hot`
# URL list against `tessera --http` (2 workers), then, in the same run, nginx serving the
# same bytes as static files and nginx in front of tessera's FastCGI with kept
# connections. Same wrk script and settings as ../shared/bench/fcgi-bench.sh. Not part
# of the test suite. Usage: bench-http.sh [DURATION] [BINARY]
set -euo pipefail
B=${BENCH:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUR=${1:-10}; BIN=${2:-$ROOT/target/release/tessera}
IMAGES=${IMAGE_DIR:-/tmp/bench/images}; URLS=${URL_DIR:-/tmp/bench/urls}/hot.txt
D=$(mktemp -d /tmp/bench-http.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HP=$(free_port)
FILESYSTEM_PREFIX="$IMAGES/" VERBOSITY=0 MEMCACHED_SERVERS= "$BIN" \
  --http "127.0.0.1:$HP" --workers 2 > "$D/tessera.log" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null; wait $SP 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$HP/" && break; sleep 0.1; done
# Warm the shared cache with every URL once.
while read -r u; do curl -sf -o /dev/null "http://127.0.0.1:$HP$u"; done < "$URLS"
for c in 16 64 256; do
  URLS_FILE="$URLS" NTHREADS=2 WRK_JSON="$D/h$c.json" wrk -t2 -c"$c" -d"${DUR}s" --timeout 10s \
    -s "$B/urls.lua" "http://127.0.0.1:$HP" > "$D/wrk$c.txt" 2>&1
  python3 - "$D/h$c.json" "$c" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
errs = d["err_connect"] + d["err_read"] + d["err_write"] + d["err_timeout"]
print(f"--http, 2 workers, {sys.argv[2]:>3} connections: {d['rps']:9.1f} req/s, p99 {d['lat_p99_ms']} ms, "
      f"socket errors {errs} (connect {d['err_connect']} read {d['err_read']} write {d['err_write']} "
      f"timeout {d['err_timeout']}), non2xx {d['non2xx']}")
PY
done
kill $SP; wait $SP 2>/dev/null || true
FP=$(free_port)
FILESYSTEM_PREFIX="$IMAGES/" VERBOSITY=0 MEMCACHED_SERVERS= "$BIN" \
  --bind "127.0.0.1:$FP" --workers 2 > "$D/fcgi.log" 2>&1 &
SP=$!
sleep 0.5
bash "$ROOT/tests/bench-static-ceiling.sh" "$FP" "$DUR"
kill $SP; wait $SP 2>/dev/null || true
bash "$ROOT/tests/bench-keepalive.sh" 16 2 "$DUR"
