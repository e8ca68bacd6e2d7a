#!/bin/bash
# tools/qemu/mkinitramfs.sh KVER INIT OUT [MODULE]...
# Writes OUT, a gzip'd cpio: static busybox, INIT as /init, and the named
# modules of kernel KVER (from this machine's /lib/modules, dependencies first)
# under /mods with /mods/order, the order in which INIT must insmod them.
# Debian's kernel has virtio, 9p and virtio_net as modules: a guest needs them
# before it can reach its root or its NIC. Built in a second, so made at test time.
# EXTRA_BINARIES (environment, optional): absolute paths of more programs for the
# guest (iperf3 for the QoS test), copied with the shared libraries ldd lists for
# them, each at its own path, so the guest's dynamic loader finds them.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 KVER INIT OUT [MODULE]..." >&2; exit 2; }
KVER=$1; INIT=$2; OUT=$3; shift 3
work=$(mktemp -d /tmp/vnm-initramfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,proc,sys,mnt,newroot,tmp,mods}
cp /bin/busybox "$work/bin/busybox"
cp "$INIT" "$work/init" && chmod 755 "$work/init"
declare -A seen=()
add() {  # depth-first: a module's dependencies are listed before it
  local name=${1//-/_} dep
  [ -z "${seen[$name]:-}" ] || return 0
  seen[$name]=1
  for dep in $(modinfo -k "$KVER" -F depends "$name" | tr , ' '); do add "$dep"; done
  local file; file=$(modinfo -k "$KVER" -F filename "$name")
  case "$file" in (builtin|"(builtin)"|"") return 0;; esac
  cp "$file" "$work/mods/$name.ko"
  echo "$name" >> "$work/mods/order"
}
: > "$work/mods/order"
for m in "$@"; do add "$m"; done
for bin in ${EXTRA_BINARIES:-}; do
  for file in "$bin" $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$work$(dirname "$file")"
    cp -L "$file" "$work$file"
  done
done
( cd "$work" && find . | /bin/busybox cpio -o -H newc 2>/dev/null ) | gzip -1 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
