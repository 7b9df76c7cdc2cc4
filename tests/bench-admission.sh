#!/usr/bin/env bash
# Tiles under an export flood: wrk replays the `hot` or `cold` URL list (8 connections)
# against `tessera --http` with 2 workers while a second wrk floods it with whole-image
# exports (8 connections, every one different, so none is a cache hit). Three servers in
# one run: tiles alone, flood with admission off (MAX_EXPENSIVE_WORKERS=0), flood with
# admission on (MAX_EXPENSIVE_WORKERS=1); prints the tiles' p99 and rate and what the
# flood got. Uses ../shared/bench's corpus and wrk script. Not part of the test suite.
# FRONT=nginx puts the benchmark's private nginx in front of tessera's FastCGI (one
# upstream connection per request, as nginx does by default) instead of --http.
# ROUNDS=N repeats the three servers N times, alternating, and ends with each one's
# median p99: on a shared 2-core machine one 10 s p99 varies by 2x from run to run.
# Behind nginx a fourth server measures the front itself: the flood asks nginx for
# static copies of 16 exports, paced to about the rate tessera renders them (8 per s),
# so the back end does nothing for it and what the tiles lose is nginx's share.
# Usage: [FRONT=http|nginx] [ROUNDS=N] bench-admission.sh [hot|cold] [DURATION] [BINARY]
set -euo pipefail
B=${BENCH:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIST=${1:-hot}; DUR=${2:-20}; BIN=${3:-$ROOT/target/release/tessera}
IMAGES=${IMAGE_DIR:-/tmp/bench/images}; URLS=${URL_DIR:-/tmp/bench/urls}/$LIST.txt
[ -x "$BIN" ] || { echo "no $BIN (cargo build --release)" >&2; exit 1; }
[ -f "$URLS" ] || { echo "no $URLS: run $B/make-images.sh and $B/gen-urls.py" >&2; exit 1; }
FRONT=${FRONT:-http}
D=$(mktemp -d /tmp/bench-admission.XXXXXX)
SP=
[ "$FRONT" = nginx ] && . "$B/lib-nginx.sh"
trap '[ "$FRONT" = nginx ] && nginx_stop; [ -n "$SP" ] && kill $SP 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Exports of whole images, 3000 to 4999 pixels wide, qualities 50 to 89: all different.
python3 - "$IMAGES" > "$D/exports.txt" <<'PY'
import os, sys
imgs = sorted(f for f in os.listdir(sys.argv[1])
              if f.endswith("_pyr.tif") and not f.startswith(("float", "big")))
for i in range(20000):
    print(f"/fcgi-bin/iipsrv.fcgi?FIF={imgs[i % len(imgs)]}&WID={3000 + i // len(imgs) % 2000}"
          f"&QLT={50 + i // 2000 % 40}&CVT=jpeg")
PY

# run NAME FLOOD [VAR=VALUE...]: a fresh server with those settings, tiles for DUR s,
# alongside the flood when FLOOD is 1.
phase=0
run() {
  local name=$1 flood=$2; shift 2
  local port; port=$(free_port)
  local base="http://127.0.0.1:$port"
  if [ "$FRONT" = nginx ]; then
    env "$@" FILESYSTEM_PREFIX="$IMAGES/" VERBOSITY=0 MEMCACHED_SERVERS= "$BIN" \
      --bind "127.0.0.1:$port" --workers 2 > "$D/$name.log" 2>&1 &
    SP=$!
    for _ in $(seq 100); do port_open "$port" && break; sleep 0.1; done
    nginx_start "$port"; base=$BASE
  else
    env "$@" FILESYSTEM_PREFIX="$IMAGES/" VERBOSITY=0 MEMCACHED_SERVERS= "$BIN" \
      --http "127.0.0.1:$port" --workers 2 > "$D/$name.log" 2>&1 &
    SP=$!
    for _ in $(seq 100); do curl -s -o /dev/null "$base/" && break; sleep 0.1; done
  fi
  if [ "$LIST" = hot ]; then
    while read -r u; do curl -sf -o /dev/null "$base$u"; done < "$URLS"
  fi
  local fp=
  if [ "$flood" = static ]; then
    mkdir -p "$D/static"; chmod 755 "$D" "$D/static"
    for i in $(seq 0 15); do
      [ -s "$D/static/e$i.jpg" ] || curl -sf -o "$D/static/e$i.jpg" "$base$(sed -n "$((i + 1))p" "$D/exports.txt")"
    done
    chmod 644 "$D"/static/*.jpg
    sed -i "s|server_name localhost;|server_name localhost; location /static/ { root $D; }|" "$NGX/nginx.conf"
    nginx -p "$NGX" -c "$NGX/nginx.conf" -s reload; sleep 0.5
    cat > "$D/paced.lua" <<'LUA'
local i = 0
function request() i = i + 1; return wrk.format("GET", "/static/e" .. (i % 16) .. ".jpg") end
function delay() return 1000 end
function done(s)
  local f = io.open(os.getenv("PACED_OUT"), "w")
  f:write(string.format("%.2f", s.requests / (s.duration / 1e6))); f:close()
end
LUA
    PACED_OUT="$D/paced.out" wrk -t1 -c8 -d"$((DUR + 2))s" --timeout 60s -s "$D/paced.lua" "$base" \
      > "$D/$name-flood.txt" 2>&1 &
    fp=$!
    sleep 2
  fi
  if [ "$flood" = 1 ]; then
    URLS_FILE="$D/exports.txt" NTHREADS=1 URLS_START=$((phase * 5000)) WRK_JSON="$D/$name-flood.json" \
      wrk -t1 -c8 -d"$((DUR + 2))s" --timeout 60s -s "$B/urls.lua" "$base" \
      > "$D/$name-flood.txt" 2>&1 &
    fp=$!
    sleep 2   # the flood occupies the workers first
  fi
  # A cold list stays cold across the three servers: each starts further on.
  URLS_FILE="$URLS" NTHREADS=1 URLS_START=$((phase * 15000)) WRK_JSON="$D/$name.json" \
    wrk -t1 -c8 -d"${DUR}s" --timeout 30s -s "$B/urls.lua" "$base" \
    > "$D/$name.txt" 2>&1
  [ -n "$fp" ] && wait "$fp"
  kill $SP; wait $SP 2>/dev/null || true; SP=
  phase=$((phase + 1))
  [ -n "${SHOW_JSON:-}" ] && cat "$D/$name.json" && echo
  [ "$flood" = static ] && echo "static flood through nginx: $(cat "$D/paced.out") req/s"
  python3 - "$D/$name.json" "$D/$name-flood.json" "$name" "$D/p99s" <<'PY'
import json, os, sys
t = json.load(open(sys.argv[1]))
with open(sys.argv[4], "a") as f:
    f.write(f"{sys.argv[3]}\t{t['lat_p99_ms']}\n")
line = f"{sys.argv[3]:<26} tiles: {t['rps']:8.1f} req/s, p99 {t['lat_p99_ms']:>8} ms, non2xx {t['non2xx']}"
if os.path.exists(sys.argv[2]):
    f = json.load(open(sys.argv[2]))
    line += (f" | exports: {f['rps']:6.2f} req/s, p99 {f['lat_p99_ms']} ms, "
             f"non2xx {f['non2xx']} (503 when refused)")
print(line)
PY
}

echo "tessera ($FRONT), 2 workers, $LIST tiles on 8 connections, $DUR s each ($BIN)"
for _ in $(seq "${ROUNDS:-1}"); do
  run "no flood" 0
  run "flood, admission off" 1 MAX_EXPENSIVE_WORKERS=0
  run "flood, admission on (K=1)" 1 MAX_EXPENSIVE_WORKERS=1
  [ "$FRONT" = nginx ] && run "static flood (nginx only)" static
  rm -f "$D"/*.json
done
python3 - "$D/p99s" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, p99 = line.rstrip("\n").split("\t")
    runs.setdefault(name, []).append(float(p99))
base = statistics.median(runs["no flood"])
for name, v in runs.items():
    m = statistics.median(v)
    print(f"median of {len(v)}: {name:<26} tile p99 {m:8.3f} ms ({m / base:.2f}x no flood)  runs: {v}")
PY
