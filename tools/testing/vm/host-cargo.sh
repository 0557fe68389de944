#!/bin/bash
# Run the host's cargo (the device model and the pure-logic crate are host programs).

source "$(dirname "$0")/common.sh"

if ! command -v cargo >/dev/null; then
	[ -x "$HOME/.cargo/bin/cargo" ] && PATH=$HOME/.cargo/bin:$PATH
fi
command -v cargo >/dev/null ||
	die "cargo not found: install a Rust toolchain (rustup, or Debian's cargo) on the host"
export CARGO_TARGET_DIR
exec cargo "$@"
