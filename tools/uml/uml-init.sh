#!/bin/busybox sh
# PID 1 inside UML (adapted from ../shared/tools/uml). "/" is the host's / over
# hostfs, read-only. $UMLRUN holds the command script; its exit code goes to $UMLRUN/rc.
# Static busybox applets are used for setup: each exec of a dynamic binary costs ~0.3 s here.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B grep -q " /dev " /proc/mounts || $B mount -t devtmpfs dev /dev
$B mkdir -p /dev/pts /dev/shm
$B mount -t devpts devpts /dev/pts
$B mount -t tmpfs shm /dev/shm
$B mount -t tmpfs run /run
# the UML kernel's modules (host path $UML_MODS) appear at /lib/modules (the host
# needs that directory to exist as a mount point; run.sh creates it)
$B mount -t hostfs -o "$UML_MODS" none /lib/modules
$B modprobe overlay
# throwaway writable layer over the directories programs write to
$B mount -t tmpfs upper /mnt
for d in tmp var etc root home; do
  $B mkdir /mnt/$d /mnt/$d/u /mnt/$d/w
  $B mount -t overlay overlay -o lowerdir=/$d,upperdir=/mnt/$d/u,workdir=/mnt/$d/w /$d \
    || echo "uml-init: overlay on /$d failed"
done
for d in $UMLRUN $(echo "$UML_RWDIRS" | $B tr , ' '); do $B mount -t hostfs -o "$d" none "$d"; done
$B ip link set lo up
HOME=/root; TERM=dumb; export HOME TERM
/bin/bash "$UMLRUN/cmd" </dev/console >/dev/console 2>&1
echo $? > "$UMLRUN/rc"
$B sync
$B poweroff -f
