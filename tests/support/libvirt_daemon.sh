#!/bin/sh
# tests/support/libvirt_daemon.sh DIR OVS_RUNDIR: becomes a private libvirtd (exec), run
# as `ip netns exec NS tests/support/libvirt_daemon.sh …` so that it has the namespace's
# links (libvirt's taps appear there) and a mount namespace of its own (ip netns
# exec unshares one, a slave of the host's /): every mount below stays in there.
# DIR holds the daemon's config, runtime, state, cache and log; nothing of the
# host's /etc, /run or /var is written.
set -eu
D=$1; OVS=$2
# libvirt has fixed root paths (/run/libvirt, /etc/libvirt, /var/{lib,log,cache}/libvirt):
# give it private ones
mount -t tmpfs vnm-lv-run /run
mkdir -p /run/libvirt /run/openvswitch
mount --bind "$D/run" /run/libvirt
# libvirt calls ovs-vsctl for <virtualport type='openvswitch'/> with a clean
# environment (no OVS_RUNDIR): the namespace's private Open vSwitch at the default path
mount --bind "$OVS" /run/openvswitch
mount --bind "$D/etc" /etc/libvirt
for p in lib log cache; do
  [ -d /var/$p/libvirt ] || { mount -t tmpfs vnm-lv-$p /var/$p; mkdir -p /var/$p/libvirt; }
  mount --bind "$D/$p" /var/$p/libvirt
done
# libvirt 9.0 resolves its built-in default user libvirt-qemu before it reads
# qemu.conf (user = "root"); without libvirt-daemon-system there is none: a private passwd
cp /etc/passwd "$D/passwd"; cp /etc/group "$D/group"
grep -q '^libvirt-qemu:' "$D/passwd" || {
  echo 'libvirt-qemu:x:64055:64055::/nonexistent:/usr/sbin/nologin' >> "$D/passwd"
  echo 'libvirt-qemu:x:64055:' >> "$D/group"; }
mount --bind "$D/passwd" /etc/passwd
mount --bind "$D/group" /etc/group
exec /usr/sbin/libvirtd --config "$D/etc/libvirtd.conf" --pid-file "$D/libvirtd.pid"
