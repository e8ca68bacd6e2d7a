#!/bin/busybox sh
# PID 1 in the runner's guest (tools/qemu/run.sh), after the initramfs switched
# to this machine's / over 9p, read-only. The command script is $VNMRUN/cmd (9p
# tag "run", writable); its exit code goes to $VNMRUN/rc.
# Static busybox applets for the setup: nothing here depends on the host's libraries.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mkdir -p /dev/pts /dev/shm
$B mount -t devpts devpts /dev/pts
$B mount -t tmpfs shm /dev/shm
$B mount -t tmpfs run /run
# throwaway writable layer over the directories programs write to
$B mount -t tmpfs upper /mnt
for d in tmp var etc root home; do
  $B mkdir /mnt/$d /mnt/$d/u /mnt/$d/w
  $B mount -t overlay overlay -o lowerdir=/$d,upperdir=/mnt/$d/u,workdir=/mnt/$d/w /$d \
    || echo "guest-init: overlay on /$d failed"
done
$B chmod 1777 /tmp  # the overlay's root takes its mode from the fresh upper dir (0755)
n=0
for d in $VNMRUN $(echo "$VNMRWDIRS" | $B tr , ' '); do
  $B mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "rw$n" "$d" \
    || echo "guest-init: cannot mount $d"
  n=$((n + 1))
done
# --snapshot DIR: a copy taken now, so that a file edited on the host during the
# run is never seen half-cached (9p cache=loose); its dot-directories (.venv, .git,
# caches) stay read-only views of the host's
if [ -n "$VNMSNAP" ]; then
  $B mkdir /mnt/snap /mnt/orig
  $B mount --bind "$VNMSNAP" /mnt/orig
  for f in /mnt/orig/* /mnt/orig/.[!.]*; do
    [ -e "$f" ] || continue
    name=${f#/mnt/orig/}
    case "$name" in
      .*) [ -d "$f" ] && { $B mkdir "/mnt/snap/$name"; $B mount --bind "$f" "/mnt/snap/$name"; continue; } ;;
    esac
    $B cp -a "$f" /mnt/snap/
  done
  $B mount --rbind /mnt/snap "$VNMSNAP"
fi
# the modules the tests need, from the host's /lib/modules of this kernel version
$B xargs /sbin/modprobe -a < "$VNMRUN/modules" || echo "guest-init: some modules failed to load"
$B ip link set lo up
HOME=/root; TERM=dumb; export HOME TERM
$B stty -onlcr </dev/console  # the serial line's \r\n would end every line of the output
/bin/bash "$VNMRUN/cmd" </dev/console >/dev/console 2>&1
echo $? > "$VNMRUN/rc"
$B sync
$B poweroff -f
