#!/usr/bin/env bash
# The official IIIF Image API validator (PyPI `iiif-validator`) for tessera's test suite:
# installs it, writes its test image, and runs it against a server already listening.
# tests/iiif_validator.rs drives it; tests/run-all.sh installs it.
#
#   iiif-validate.sh install
#       Installs the validator into a private venv, $IIIF_VALIDATOR_VENV (default
#       target/iiif-validator/venv), unless that venv already has this version. Needs
#       python3 with venv (Debian: python3-venv) and PyPI.
#
#   iiif-validate.sh image DIR
#       Writes the validator's test image into DIR as a tiled pyramid TIFF named exactly
#       67352ccc-d1b0-11e1-89ae-279075081939 (no extension; tessera knows a TIFF by its
#       first bytes). The package does not ship the image: it is drawn here, pixel for
#       pixel, from the colour table inside the package (1000x1000, 10x10 squares of
#       100 px). Needs the venv and vips (Debian: libvips-tools); no network.
#
#   iiif-validate.sh run HOST:PORT PREFIX VERSION LEVEL
#       e.g. iiif-validate.sh run 127.0.0.1:8080 iiif 3.0 2 (PREFIX: the path before the
#       identifier, without slashes). Prints the validator's report and a last line
#       "validator VERSION level LEVEL: N passed, M failed"; exits 0 only when tests ran
#       and none failed (the validator counts warnings as failures too).
#
# What the validator asks of the server: an info.json "id" equal to the URL it asked
# for, a redirect from {base}/{id} to info.json, CORS "*" (CORS='*'), Link headers, a
# %2D in the identifier read as "-", a 404 for an identifier with a slash, and for 3.0
# a refused size "full" (IIIF_ACCEPT_FULL=0); for 2.0 a version 2 info.json
# (IIIF_VERSION=2: the validator sends no Accept header).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.0.5
VENV=${IIIF_VALIDATOR_VENV:-$PWD/target/iiif-validator/venv}
ID=67352ccc-d1b0-11e1-89ae-279075081939

usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

install() {
  if "$VENV/bin/pip" show iiif-validator 2>/dev/null | grep -qx "Version: $VERSION"; then
    return 0
  fi
  python3 -m venv "$VENV" || {
    echo "iiif-validate: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
    exit 2
  }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "iiif-validator==$VERSION"
}

image() {
  local dir=$1
  [ -x "$VENV/bin/iiif-validate.py" ] || { echo "iiif-validate: run '$0 install' first" >&2; exit 2; }
  command -v vips >/dev/null || { echo "iiif-validate: vips missing (apt-get install libvips-tools)" >&2; exit 2; }
  mkdir -p "$dir"
  local png="$dir/.$ID.png"
  "$VENV/bin/python" - "$png" <<'EOF'
import sys
from PIL import Image, ImageDraw
from iiif_validator.validator import ValidationInfo
colours = ValidationInfo().colorInfo
im = Image.new("RGB", (1000, 1000))
draw = ImageDraw.Draw(im)
for x in range(10):
    for y in range(10):
        draw.rectangle([x * 100, y * 100, x * 100 + 99, y * 100 + 99], fill=colours[x][y])
im.save(sys.argv[1])
EOF
  vips tiffsave "$png" "$dir/$ID.tif" --tile --pyramid --tile-width 256 --tile-height 256 --compression deflate
  mv "$dir/$ID.tif" "$dir/$ID"
  rm -f "$png"
}

run() {
  local server=$1 prefix=$2 version=$3 level=$4
  [ -x "$VENV/bin/iiif-validate.py" ] || { echo "iiif-validate: run '$0 install' first" >&2; exit 2; }
  local out status=0
  out=$("$VENV/bin/python" "$VENV/bin/iiif-validate.py" -s "$server" -p "$prefix" -i "$ID" \
    --version="$version" --level="$level" 2>&1) || status=$?
  printf '%s\n' "$out"
  # It ends with "Done (N tests, M failures)"; without that line it broke on the way.
  local result total fail
  result=$(grep -E '^Done \([0-9]+ tests, [0-9]+ failures\)' <<<"$out" | tail -n 1 || true)
  if [ -z "$result" ]; then
    echo "validator $version level $level: 0 passed, 1 failed (no result line, exit $status)"
    return 1
  fi
  total=$(sed -E 's/^Done \(([0-9]+) tests.*/\1/' <<<"$result")
  fail=$(sed -E 's/.* ([0-9]+) failures\)/\1/' <<<"$result")
  echo "validator $version level $level: $((total - fail)) passed, $fail failed"
  [ "$fail" = 0 ] && [ "$total" -gt 0 ] && [ "$status" = 0 ]
}

case "${1:-}" in
  install) [ $# -eq 1 ] || usage; install ;;
  image)   [ $# -eq 2 ] || usage; image "$2" ;;
  run)     [ $# -eq 5 ] || usage; shift; run "$@" ;;
  *)       usage ;;
esac
