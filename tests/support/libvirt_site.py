"""Two libvirt hypervisors in network namespaces, for tests with real guests.

Each host is a namespace running its own ``libvirtd`` (tests/support/libvirt_daemon.sh:
private config/run/state dirs in the test's tmp dir, a mount namespace of its
own; started here and stopped by pid) and its own Open vSwitch (tests/support/ovs.py).
libvirt makes the guests' taps and enslaves them, in the host's namespace, as
on a hypervisor. Guests are tiny: Debian's kernel (the runner's, tools/qemu)
with a busybox initramfs built here, TCG (``<domain type='qemu'>``), and a
shell on their serial port that the test drives over a unix socket.

    h1 ─ eth-X ─┐            ┌─ eth-X ─ h2     one "lanN" bridge per uplink name
    up ─ eth-X ─┴─ sw: lanN ─┘                 (a network each); "up" is the LAN's peer
    h1 ─ ul0 ─── sw: ul ─── ul0 ─ h2, up       underlay: vxlan, migration
"""

import json
import os
import re
import socket
import subprocess
import time

from support.commands import sh
from support.ovs import Ovs
from support.paths import PYTHON, REPO
from support.remotes import copy_tree

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(REPO, "tools", "qemu")
UNDERLAY = "192.168.100"          # h1 .1, h2 .2, up .254
GUEST_MIB = 96                    # 64 MiB: no output at all (../shared/KERNEL-VM.md)
OVS_CONF = ":ovs_bridge_conf:\n    :datapath_type: netdev\n"  # no openvswitch.ko here


def kernel_version():
    return subprocess.run([os.path.join(TOOLS, "kernel.sh")], capture_output=True, text=True,
                          check=True).stdout.strip()


def guest_kernel(kver, directory):
    """The uncompressed kernel (tools/qemu/vmlinux.py: boots in seconds, not tens)."""
    return subprocess.run([os.path.join(TOOLS, "vmlinux.py"), kver, str(directory)],
                          capture_output=True, text=True, check=True).stdout.strip()


def build_initramfs(path, kver):
    init = os.path.join(HERE, "libvirt_guest_init")
    subprocess.run([os.path.join(TOOLS, "mkinitramfs.sh"), kver, init, str(path),
                    "virtio_pci", "virtio_net"], check=True, capture_output=True)


class Host:
    """A hypervisor: namespace ``name``, private libvirtd and Open vSwitch."""

    def __init__(self, name, index, workdir):
        self.name, self.index = name, index
        self.address = f"{UNDERLAY}.{index}"
        self.dir = os.path.join(str(workdir), name)
        for sub in ("etc", "run", "lib", "log", "cache"):
            os.makedirs(os.path.join(self.dir, sub))
        self.run_dir = os.path.join(self.dir, "vnm-run")
        os.makedirs(self.run_dir)
        self.daemon = None
        self.ovs = Ovs(name, self.dir)
        self.ovs.start()

    @property
    def uri(self):
        return f"qemu+unix:///system?socket={self.dir}/run/libvirt-sock"

    def launch_libvirtd(self):
        with open(os.path.join(self.dir, "etc", "libvirtd.conf"), "w", encoding="utf-8") as conf:
            conf.write('unix_sock_group = "root"\nunix_sock_rw_perms = "0700"\n'
                       'auth_unix_rw = "none"\n'
                       f'log_outputs = "3:file:{self.dir}/libvirtd.log"\n')
        with open(os.path.join(self.dir, "etc", "qemu.conf"), "w", encoding="utf-8") as conf:
            # root without relabelling (no libvirt-qemu user, no security driver on this
            # machine); stdio_handler file: no virtlogd; no cgroups: ip netns exec
            # remounts /sys, there is no cgroupfs under it; migration over the underlay
            conf.write('user = "root"\ngroup = "root"\ndynamic_ownership = 0\n'
                       'remember_owner = 0\nsecurity_driver = "none"\nstdio_handler = "file"\n'
                       'cgroup_controllers = [ ]\n'
                       f'migration_address = "{self.address}"\nmigration_host = "{self.address}"\n')
        log = open(os.path.join(self.dir, "libvirtd.out"), "wb")
        # ip netns exec and the script exec: this process *is* libvirtd, stopped by its pid
        self.daemon = subprocess.Popen(
            ["ip", "netns", "exec", self.name, os.path.join(HERE, "libvirt_daemon.sh"),
             self.dir, self.ovs.dir], stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_for_libvirtd(self):
        # its first start probes QEMU's capabilities (~8 s of TCG-less QEMU runs)
        deadline = time.monotonic() + 60
        while self.virsh("version", check=False).returncode != 0:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"libvirtd in {self.name} did not start: {self.log()}")
            time.sleep(0.1)

    def log(self):
        for name in ("libvirtd.out", "libvirtd.log"):
            try:
                with open(os.path.join(self.dir, name), encoding="utf-8",
                          errors="replace") as handle:
                    text = handle.read()[-3000:]
            except OSError:
                continue
            if text:
                return text
        return ""

    def virsh(self, *args, check=True):
        done = subprocess.run(["virsh", "-q", "-c", self.uri, *args], capture_output=True,
                              text=True, check=False, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"virsh {args} on {self.name}: {done.stderr}\n{self.log()}")
        return done

    def ip(self, *args):
        return sh("ip", "-n", self.name, *args)

    def links(self):
        return {link["ifname"]: link for link in json.loads(self.ip("-d", "-j", "link", "show"))}

    def stop(self):
        if self.daemon:
            for name in self.virsh("list", "--name", check=False).stdout.split():
                self.virsh("destroy", name, check=False)
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
            self.daemon = None
        self.ovs.stop()


class Site:
    """sw, up, h1, h2 and the two daemons; ``lans`` are the uplink names, one per network."""

    def __init__(self, workdir, prefix, lans):
        self.workdir = str(workdir)
        self.sw, self.up = f"{prefix}-sw", f"{prefix}-up"
        self.hosts = []
        self.made = []
        self.kver = kernel_version()
        self.initrd = os.path.join(self.workdir, "guest-initrd.gz")
        self.tree = copy_tree(os.path.join(self.workdir, "remotes"), OVS_CONF)
        try:
            build_initramfs(self.initrd, self.kver)
            self.kernel = guest_kernel(self.kver, os.path.join(REPO, ".cache", "qemu"))
            for name in (self.sw, self.up, f"{prefix}-h1", f"{prefix}-h2"):
                sh("ip", "netns", "add", name)
                self.made.append(name)
                sh("ip", "-n", name, "link", "set", "lo", "up")
            self._wire(lans)
            self.hosts = [Host(f"{prefix}-h{i}", i, self.workdir) for i in (1, 2)]
            for host in self.hosts:  # both daemons start at once
                host.launch_libvirtd()
            for host in self.hosts:
                host.wait_for_libvirtd()
        except BaseException:
            self.delete()
            raise

    def _switch_port(self, bridge, peer_ns, name):
        port = f"{peer_ns.rsplit('-', 1)[1]}-{name}"[:15]
        sh("ip", "-n", self.sw, "link", "add", port, "type", "veth", "peer", "name", name,
           "netns", peer_ns)
        sh("ip", "-n", self.sw, "link", "set", port, "master", bridge, "up")
        sh("ip", "-n", peer_ns, "link", "set", name, "up")

    def _wire(self, lans):
        hosts = [n for n in self.made if n not in (self.sw, self.up)]
        for bridge in ["ul"] + [f"lan{i}" for i in range(len(lans))]:
            # no IGMP querier here: flood multicast (the VXLAN groups) instead of snooping
            sh("ip", "-n", self.sw, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0")
            sh("ip", "-n", self.sw, "link", "set", bridge, "up")
        for index, name in enumerate(hosts + [self.up], 1):
            self._switch_port("ul", name, "ul0")
            last = 254 if name == self.up else index
            sh("ip", "-n", name, "addr", "add", f"{UNDERLAY}.{last}/24", "dev", "ul0")
            for lan, uplink in enumerate(lans):
                self._switch_port(f"lan{lan}", name, uplink)

    def host(self, index):
        return self.hosts[index - 1]

    def run(self, host, driver, action, *args, stdin=b""):
        """The real action script in ``host``'s namespace, as oned runs it there."""
        env = dict(os.environ, VNM_RUN_DIR=host.run_dir, **host.ovs.env)
        return subprocess.run(["ip", "netns", "exec", host.name, PYTHON,
                               os.path.join(self.tree, driver, action), *args],
                              input=stdin, capture_output=True, env=env, check=False)

    def up_exec(self, *args, check=True):
        return sh("ip", "netns", "exec", self.up, *args, check=check)

    def delete(self):
        for host in self.hosts:
            host.stop()
        for name in reversed(self.made):
            sh("ip", "netns", "del", name, check=False)


def domain_xml(name, kernel, initrd, address, console, interfaces):
    """A domain as OpenNebula's KVM driver writes it, minus disks: TCG, tiny."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{GUEST_MIB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel><initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 gip={address}</cmdline></os>
  <features><acpi/><tcg><tb-cache unit='MiB'>32</tb-cache></tcg></features>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{"".join(interfaces)}
    <serial type='unix'><source mode='bind' path='{console}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def interface_xml(bridge, target, mac, ovs=False):
    """``<interface>`` as the KVM driver writes a NIC (also for attach-device)."""
    port = "\n      <virtualport type='openvswitch'/>" if ovs else ""
    return f"""    <interface type='bridge'>
      <source bridge='{bridge}'/>{port}
      <target dev='{target}'/>
      <mac address='{mac}'/>
      <model type='virtio'/>
    </interface>
"""


class Console:
    """The guest's serial shell over libvirt's unix socket: run a command, get its status."""

    def __init__(self, path, timeout=90):
        self.count = 0
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        # the shell appears once the guest has booted: ask until it answers
        while True:
            try:
                self.run("true", timeout=3)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def run(self, command, timeout=30):
        """(exit status, output) of ``command`` in the guest."""
        # a numbered mark: answers to earlier commands (the boot probes) never match,
        # nor does the tty's echo of this line (it shows '$?', not digits)
        self.count += 1
        mark = re.compile(rf"<rc{self.count}=(\d+)>")
        self.sock.sendall(f"{command}; echo '<rc{self.count}='$?'>'\n".encode())
        buffer, deadline = b"", time.monotonic() + timeout
        self.sock.settimeout(0.5)
        while True:
            match = mark.search(buffer.decode(errors="replace"))
            if match:
                return int(match.group(1)), buffer.decode(errors="replace")[:match.start()]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{command!r}: {buffer[-500:]!r}")
            try:
                buffer += self.sock.recv(4096)
            except socket.timeout:
                pass

    def ping(self, address, count=2):
        return self.run(f"ping -c {count} -W 2 {address} >/dev/null 2>&1")[0] == 0

    def close(self):
        self.sock.close()
