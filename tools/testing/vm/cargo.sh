#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Run cargo for the host programs (the device model, the pure-logic crate).
#
#   in-root.sh cargo.sh ARGS...
#
# Inside the toolchain root this is the root's cargo (Debian trixie's), so a machine without a
# Rust toolchain of its own builds everything. With TOOLCHAIN=host, in-root.sh runs this on the
# host and the host's cargo is used. Registry downloads and build outputs live in the cache.

source "$(dirname "$0")/common.sh"

if ! command -v cargo >/dev/null; then
	[ -x "$HOME/.cargo/bin/cargo" ] && PATH=$HOME/.cargo/bin:$PATH
fi
command -v cargo >/dev/null ||
	die "cargo not found: the toolchain root lacks it, or TOOLCHAIN=host and the host has none"
export CARGO_TARGET_DIR
# The host's own CARGO_HOME (if any) for TOOLCHAIN=host; the cache for the toolchain root.
if [ "${TOOLCHAIN:-root}" != host ]; then
	export CARGO_HOME=$CACHE_DIR/build/cargo-home
fi
exec cargo "$@"
