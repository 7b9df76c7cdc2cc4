#!/usr/bin/env bash
# Operational measurements (not part of the test suite): SIGHUP twice and kill -9 of a
# worker, each under a 16-connection wrk load through nginx, on the benchmark corpus of
# ../shared/bench (make-images.sh, gen-urls.py). Needs a release build.
set -euo pipefail
B=${BENCH:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}; . $B/lib-nginx.sh
PORT=19301; IMG=/tmp/bench/images
FILESYSTEM_PREFIX=$IMG/ URI_MAP='iiif=>IIIF' VERBOSITY=1 LOGFILE=/tmp/ops.log MEMCACHED_SERVERS= \
  "$(dirname "$0")/../target/release/tessera" --bind 127.0.0.1:$PORT --workers 2 & SUP=$!
sleep 0.5; nginx_start $PORT
trap 'nginx_stop; kill $SUP 2>/dev/null' EXIT
run() { # name, action
  URLS_FILE=/tmp/bench/urls/$2.txt NTHREADS=2 WRK_JSON=/tmp/ops-$1.json wrk -t2 -c16 -d8s --timeout 10s -s $B/urls.lua "$BASE" > /tmp/ops-$1.txt 2>&1 &
  W=$!; sleep 3; eval "$3"; wait $W
  python3 -c "import json;d=json.load(open('/tmp/ops-$1.json'));print('$1', 'requests',d.get('requests'),'non2xx',d.get('non2xx'),'sock_errors',d['err_connect']+d['err_read']+d['err_write']+d['err_timeout'])"
}
run hup hot 'kill -HUP $SUP; sleep 1; kill -HUP $SUP'
run hupcold cold 'kill -HUP $SUP'
killone() {
  local victim; victim=$(cat /proc/$SUP/task/$SUP/children | awk "{print \$1}")
  local t0; t0=$(date +%s%N); kill -9 $victim
  while :; do c=$(cat /proc/$SUP/task/$SUP/children); n=$(echo $c | wc -w); if [ "$n" = 2 ] && ! echo " $c " | grep -q " $victim "; then break; fi; done
  echo "replacement after $(( ($(date +%s%N) - t0) / 1000 )) us" > /tmp/ops-kill-time.txt
}
run kill9 cold 'killone'
cat /tmp/ops-kill-time.txt
grep -E "Worker|SIGHUP" /tmp/ops.log | tail -8
