#!/usr/bin/env bash
# Builds target/packages/tessera_*.deb and tessera-*.rpm from a release build.
# Installs cargo-deb and cargo-generate-rpm first when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
command -v cargo-generate-rpm >/dev/null || cargo install --locked cargo-generate-rpm
cargo build --release
mkdir -p target/packages
cargo deb --no-build --output target/packages/ >/dev/null
strip -o target/release/tessera.stripped target/release/tessera
cp target/release/tessera target/release/tessera.debug
cp target/release/tessera.stripped target/release/tessera
cargo generate-rpm --output target/packages/ >/dev/null
cp target/release/tessera.debug target/release/tessera
rm -f target/release/tessera.debug target/release/tessera.stripped
ls target/packages/
