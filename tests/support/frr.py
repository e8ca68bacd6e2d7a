"""FRR (zebra + bgpd) in a test's hypervisor namespace, with private config/run dirs.

An EVPN control plane as operators run it: iBGP between the hosts' underlay
addresses, ``advertise-all-vni``. zebra discovers the VNIs from the VXLAN
devices it sees in the namespace (the ones vnm made) and installs the remote
VTEPs' flood entries itself. Started with ``ip netns exec``; stopped by pid.
"""

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time

FRR = "/usr/lib/frr"

BGPD_CONF = """\
frr defaults datacenter
hostname {name}
log file {log}
router bgp 65000
 bgp router-id {address}
 no bgp default ipv4-unicast
 neighbor {peer} remote-as 65000
 neighbor {peer} timers connect 1
 address-family l2vpn evpn
  neighbor {peer} activate
  advertise-all-vni
 exit-address-family
"""


class Frr:
    def __init__(self, netns, address, peer):
        self.netns = netns
        # the daemons drop to the frr user (Debian builds FRR with a vty group, and
        # root is not in it): their directory must be reachable and theirs, so not
        # under pytest's private tmp dir
        self.dir = tempfile.mkdtemp(prefix=f"vnm-frr-{address}-")
        os.chmod(self.dir, 0o755)
        os.chown(self.dir, pwd.getpwnam("frr").pw_uid, grp.getgrnam("frr").gr_gid)
        self.zsock = os.path.join(self.dir, "zserv.api")
        self.procs = []
        with open(self.path("zebra.conf"), "w", encoding="ascii") as handle:
            handle.write(f"hostname zebra-{address}\n")
        with open(self.path("bgpd.conf"), "w", encoding="ascii") as handle:
            handle.write(BGPD_CONF.format(name=f"bgpd-{address}", address=address, peer=peer,
                                          log=self.path("bgpd.log")))

    def path(self, name):
        return os.path.join(self.dir, name)

    def _start(self, daemon, *extra):
        argv = ["ip", "netns", "exec", self.netns, f"{FRR}/{daemon}",
                "-f", self.path(f"{daemon}.conf"), "-i", self.path(f"{daemon}.pid"),
                "-z", self.zsock, "--vty_socket", self.dir, "-P", "0", "-u", "frr", "-g", "frr",
                "--log", f"file:{self.path(daemon + '.out')}", *extra]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def start(self):
        self._start("zebra")
        deadline = time.monotonic() + 10
        while not os.path.exists(self.zsock):  # bgpd needs zebra's API socket
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise AssertionError(f"zebra did not start: {self.log('zebra.out')}")
            time.sleep(0.05)
        self._start("bgpd", "-p", "179")
        return self

    def log(self, name):
        try:
            with open(self.path(name), encoding="utf-8", errors="replace") as handle:
                return handle.read()[-2000:]
        except OSError:
            return ""

    def vtysh(self, command):
        """``vtysh -c`` against this instance's sockets (for failure messages)."""
        done = subprocess.run(["ip", "netns", "exec", self.netns, "vtysh", "--vty_socket",
                               self.dir, "-c", command], capture_output=True, text=True,
                              check=False)
        return done.stdout + done.stderr

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
