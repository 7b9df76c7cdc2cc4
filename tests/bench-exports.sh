#!/usr/bin/env bash
# Peak worker RSS (VmHWM) and time of 5000-px exports (`WID=5000&CVT=jpeg`) from two
# tessera builds, alternating per file in one run: each side starts one `--http`
# worker on loopback with the tile cache off, answers the export three times, and is
# stopped. Usage: tests/bench-exports.sh BEFORE_BIN AFTER_BIN IMAGE_DIR FILE...
# (IMAGE_DIR: the benchmark corpus, e.g. built by make-images.sh).
set -u
[ $# -ge 4 ] || { sed -n 2,6p "$0"; exit 2; }
BEFORE=$1 AFTER=$2 IMG=$3
shift 3
for f in "$@"; do
  for side in before after; do
    bin=$BEFORE; [ $side = after ] && bin=$AFTER
    port=$(( 21000 + RANDOM % 5000 ))
    log=$(mktemp)
    FILESYSTEM_PREFIX=$IMG/ MAX_IMAGE_CACHE_SIZE=0 LOGFILE=$log MEMCACHED_SERVERS= \
      "$bin" --http 127.0.0.1:$port --workers 1 >/dev/null 2>&1 &
    sup=$!
    for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$port/ && break; sleep 0.1; done
    w=$(awk '{print $1}' /proc/$sup/task/$sup/children)
    q="fcgi-bin/iipsrv.fcgi?FIF=$f&WID=5000&CVT=jpeg"
    ts=""
    for _ in 1 2 3; do
      ts="$ts $(curl -s -o /dev/null -w '%{http_code}:%{time_total}' "http://127.0.0.1:$port/$q")"
    done
    hwm=$(awk '/VmHWM/{print int($2/1024)}' /proc/$w/status)
    echo "$f $side: status:seconds$ts, VmHWM $hwm MB"
    kill $sup; wait $sup 2>/dev/null
    rm -f "$log"
  done
done
