#!/bin/bash
# tools/qemu/run.sh [-m MEM] [-c CPUS] [-t SECONDS] [--rwdir DIR]... [--snapshot DIR] 'COMMAND'
# Runs COMMAND with bash, as root, in Debian's own kernel (linux-image-amd64)
# under QEMU, whose root is this machine's / over 9p, read-only; /tmp /var /etc
# /root /home get a throwaway tmpfs overlay, /run a tmpfs; each --rwdir DIR is
# really writable; --snapshot DIR is copied at boot (a consistent view while
# the host's copy is being edited; its dot-directories are not copied).
# Exported variables and the current directory are carried in, the output
# streams to stdout. Exit code: the command's; 124 on timeout (-t); 125 if the
# guest died without reporting one.
# TCG, not KVM: on these machines /dev/kvm opens but a KVM guest makes no
# progress (nested virtualisation); VNM_QEMU_ACCEL=kvm where a probe shows it runs.
set -u
# one vCPU: the full_kernel group took 249 s with it, 322 s with two (multi-threaded
# TCG's cost is more than a second CPU gives on a 2-core machine)
MEM=2G; CPUS=1; TMO=0; RW=""; SNAP=""
while [ $# -gt 1 ]; do case "$1" in
  -m) MEM=$2; shift 2;; -c) CPUS=$2; shift 2;; -t) TMO=$2; shift 2;;
  --rwdir) RW="$RW,$(realpath "$2")"; shift 2;; --snapshot) SNAP=$(realpath "$2"); shift 2;;
  *) break;; esac; done
[ $# -eq 1 ] || { echo "usage: $0 [-m MEM] [-c CPUS] [-t SECONDS] [--rwdir DIR]... [--snapshot DIR] 'COMMAND'" >&2; exit 2; }
HERE=$(dirname "$(realpath "$0")")
KVER=$("$HERE/kernel.sh") || exit 125
CACHE=${VNM_QEMU_CACHE:-$(dirname "$(dirname "$HERE")")/.cache/qemu}
mkdir -p "$CACHE"
KERNEL=$("$HERE/vmlinux.py" "$KVER" "$CACHE") || exit 125
INITRD=$CACHE/runner-$KVER.cpio.gz
if [ ! -s "$INITRD" ] || [ "$INITRD" -ot "$HERE/initramfs-init" ] || [ "$INITRD" -ot "$HERE/mkinitramfs.sh" ]; then
  "$HERE/mkinitramfs.sh" "$KVER" "$HERE/initramfs-init" "$INITRD" virtio_pci 9pnet_virtio 9p overlay \
    || { echo "run.sh: cannot build the initramfs" >&2; exit 125; }
fi
run=$(mktemp -d /tmp/qemu-run.XXXXXX)
# the host's tree is read-only in there: no bytecode or pytest cache written beside the sources
{ export -p; echo "export TERM=dumb PYTHONDONTWRITEBYTECODE=1"; printf 'cd %q || exit 126\n' "$PWD"; printf '%s\n' "$1"; } > "$run/cmd"
# what the tests need beyond the host's kernel; ipset's set types are modules of their own
{ echo bridge veth 8021q vxlan dummy ifb tun openvswitch br_netfilter sch_htb nf_tables \
    ip_tables iptable_filter ip6_tables ip6table_filter nft_compat \
    nf_conntrack_bridge nft_meta_bridge nft_ct nft_connlimit
  ls "/lib/modules/$KVER/kernel/net/netfilter/ipset" | sed 's/\.ko$//'; } > "$run/modules"
shares=(-virtfs "local,path=/,mount_tag=root,security_model=passthrough,readonly=on,multidevs=remap")
n=0
for d in "$run" ${RW//,/ }; do
  shares+=(-virtfs "local,path=$d,mount_tag=rw$n,security_model=passthrough,multidevs=remap")
  n=$((n + 1))
done
qemu-system-x86_64 -accel "${VNM_QEMU_ACCEL:-tcg}" -m "$MEM" -smp "$CPUS" \
  -nodefaults -no-user-config -display none -no-reboot -serial stdio \
  -kernel "$KERNEL" -initrd "$INITRD" "${shares[@]}" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 VNMINIT=$HERE/guest-init.sh VNMRUN=$run VNMRWDIRS=${RW#,} VNMSNAP=$SNAP" \
  </dev/null > >(grep --line-buffered -v -E '^\[ *[0-9.]+\] reboot: Power down') &
vm=$!
trap 'kill -TERM $vm 2>/dev/null; wait $vm; rm -rf "$run"; exit 130' INT TERM HUP
if [ "$TMO" != 0 ]; then ( trap 'kill $s 2>/dev/null; exit 0' TERM; sleep "$TMO" & s=$!; wait $s; echo "run.sh: timeout after ${TMO}s" >&2; kill -TERM $vm 2>/dev/null ) & wd=$!; fi
wait $vm
rc=$(cat "$run/rc" 2>/dev/null) || rc=125
if [ "$TMO" != 0 ]; then kill -0 $wd 2>/dev/null || { [ -s "$run/rc" ] || rc=124; }; kill $wd 2>/dev/null; wait $wd 2>/dev/null; fi
rm -rf "$run"
exit "$rc"
