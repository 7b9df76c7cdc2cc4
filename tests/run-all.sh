#!/usr/bin/env bash
# Runs tessera's whole test suite on Debian 12 with Rust: installs the Debian packages
# the build and the tests need (when missing), builds the test corpus, then runs
# formatting and lint checks and every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="build-essential pkg-config cmake nasm libzstd-dev libvips-tools libtiff-tools bc
      nginx-light spawn-fcgi iipimage-server curl file rpm openrc libfcgi-bin
      apache2-bin libapache2-mod-fcgid lighttpd memcached libopenjp2-tools chromium
      python3 python3-venv"
missing=0
for t in cc pkg-config cmake nasm vips tiffset bc nginx spawn-fcgi curl file rpm openrc-run cgi-fcgi \
         apache2 lighttpd memcached opj_compress chromium; do
  command -v "$t" >/dev/null || missing=1
done
[ -x /usr/lib/iipimage-server/iipsrv.fcgi ] || missing=1
[ -e /usr/include/zstd.h ] || missing=1
[ -e /usr/lib/apache2/modules/mod_fcgid.so ] || missing=1
python3 -c 'import ensurepip' 2>/dev/null || missing=1
if [ "$missing" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  # Keep packaged services (nginx, lighttpd) from starting during the install.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $PKGS
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

# OpenSeadragon for the browser test, from the npm registry (Node.js and npm come with
# the machine; Debian's are used when they do not).
if ! command -v npm >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
OSD=target/viewer/node_modules/openseadragon/build/openseadragon/openseadragon.min.js
[ -e "$OSD" ] || npm install --prefix target/viewer --no-audit --no-fund --silent openseadragon@6

# The official IIIF validator for tests/iiif_validator.rs, from PyPI into target/.
bash tests/iiif-validate.sh install

export TESSERA_FIXTURES="$PWD/target/fixtures"
[ "$TESSERA_FIXTURES/.complete" -nt tests/make-fixtures.sh ] || bash tests/make-fixtures.sh "$TESSERA_FIXTURES"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
bash tests/fuzz-smoke.sh 60
