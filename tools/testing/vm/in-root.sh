#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Run a command inside the toolchain root. The bind mounts live in a private mount
# namespace, so they vanish with the command whatever way it exits.
#
#   in-root.sh COMMAND [ARGS...]

source "$(dirname "$0")/common.sh"

# TOOLCHAIN=host: the host already has what packages.txt lists.
[ "${TOOLCHAIN:-root}" = host ] && exec "$@"

need_root "entering the toolchain root"
root=$("$VM_DIR/toolchain.sh")
mkdir -p "$CACHE_DIR/build"

exec unshare --mount --propagation private -- /bin/bash -euc '
root=$1 src=$2 build=$3
shift 3
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/tmp"
mount -t tmpfs tmpfs "$root/run"
for dir in "$src" "$build"; do
	mkdir -p "$root$dir"
	mount --bind "$dir" "$root$dir"
done
# The host trusts what its network needs (a registry behind a TLS proxy, say): so does the root.
bundle=/etc/ssl/certs/ca-certificates.crt
if [ -f "$bundle" ] && [ -f "$root$bundle" ]; then
	mount --bind -o ro "$bundle" "$root$bundle"
fi
cd "$src"
exec chroot "$root" /usr/bin/env -i \
	HOME=/root TERM="${TERM:-dumb}" CI="${CI:-}" \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	VVM_CACHE="'"$CACHE_DIR"'" \
	/bin/bash -c "cd \"\$0\" && exec \"\$@\"" "$src" "$@"
' in-root "$root" "$SRC_TOP" "$CACHE_DIR/build" "$@"
