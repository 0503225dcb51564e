#!/usr/bin/env bash
# Builds target/debian/retrac-sync_<version>_<arch>.deb (see [package.metadata.deb] in
# Cargo.toml): the release binary, then the man pages and completions that binary writes
# from its own clap definitions, then `cargo deb --no-build` to package them.
# The package is a production install: the binary is built without the default `demo`
# feature, so it carries no fake Google and no test key (docs/admin/install.md, "With the Debian package").
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --locked --no-default-features
bin=target/release/retrac-sync

rm -rf target/assets
mkdir -p target/assets/man target/assets/completions
"$bin" man --dir target/assets/man >/dev/null
# Debian ships man pages compressed; -n keeps the archive reproducible.
gzip -9n target/assets/man/*
"$bin" completions bash >target/assets/completions/retrac-sync.bash
"$bin" completions zsh >target/assets/completions/_retrac-sync
"$bin" completions fish >target/assets/completions/retrac-sync.fish

cargo deb --no-build --locked "$@"
