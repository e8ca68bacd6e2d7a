"""Network namespaces a test creates (unique names) and deletes: a host, and its VMs' guests.

Everything a functional test changes lives in a network namespace it created
and removed afterwards; kernel state is read back with iproute2 (``ip -j``,
``bridge -j``), never with vnmlib itself.
"""

import itertools
import json
import os
import subprocess
import sys
import time

from support.commands import sh
from support.paths import PYTHON, TREE

_counter = itertools.count()


class Namespace:
    """A fresh network namespace with uplink0 / uplink1 (veth stand-ins for NICs)."""

    def __init__(self, run_dir, uplinks=("uplink0", "uplink1")):
        self.name = f"vnmt-{os.getpid()}-{next(_counter)}"
        self.run_dir = run_dir
        sh("ip", "netns", "add", self.name)
        self.ip("link", "set", "lo", "up")
        for up in uplinks:
            self.ip("link", "add", up, "type", "veth", "peer", "name", f"{up}p")
            self.ip("link", "set", up, "up")
            self.ip("link", "set", f"{up}p", "up")

    def delete(self):
        # a process still leaving the namespace (a tool a test's timeout just killed) can
        # keep its mount busy for a moment: retry rather than leave the namespace behind
        for _ in range(50):
            sh("ip", "netns", "del", self.name, check=False)
            if not os.path.exists(f"/run/netns/{self.name}"):
                return
            time.sleep(0.1)
        import warnings

        warnings.warn(f"network namespace {self.name} could not be deleted (still busy)")

    def exec(self, *args, check=True, input=None):
        return sh("ip", "netns", "exec", self.name, *args, check=check, input=input)

    def ip(self, *args, check=True):
        return sh("ip", "-n", self.name, *args, check=check)

    def links(self):
        """{ifname: {"master": …, "kind": …, "up": bool}} from ``ip -d -j link``."""
        out = {}
        for link in json.loads(self.ip("-d", "-j", "link", "show")):
            info = link.get("linkinfo", {})
            out[link["ifname"]] = {
                "master": link.get("master"),
                "kind": info.get("info_kind", ""),
                "up": "UP" in link.get("flags", []),
                "data": info.get("info_data", {}),
                "mtu": link.get("mtu"),
            }
        return out

    def bridge_vlans(self):
        """{port: {vid: set(flags)}} from ``bridge -j vlan show``."""
        out = {}
        for entry in json.loads(sh("bridge", "-n", self.name, "-j", "vlan", "show") or "[]"):
            vids = {}
            for v in entry.get("vlans", []):
                end = v.get("vlanEnd", v["vlan"])
                for vid in range(v["vlan"], end + 1):
                    vids[vid] = set(v.get("flags", []))
            out[entry["ifname"]] = vids
        return out

    def add_tap(self, name, bridge=None):
        """What libvirt does between pre and post: a guest device on the bridge.

        A veth pair stands in for the tap; its peer ``<name>p`` is the guest side.
        """
        self.ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
        self.ip("link", "set", name, "up")
        if bridge:
            self.ip("link", "set", name, "master", bridge)

    def run(self, driver, action, *args, stdin=b"", tree=TREE, env=None, python=PYTHON):
        """Run the real ``<tree>/<driver>/<action>`` script inside the namespace."""
        full_env = dict(os.environ, VNM_RUN_DIR=self.run_dir)
        full_env.update(env or {})
        script = os.path.join(tree, driver, action)
        return subprocess.run(
            ["ip", "netns", "exec", self.name, python, script, *args],
            input=stdin, capture_output=True, env=full_env, check=False,
        )


PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netprobe.py")


class Guest:
    """A VM's network namespace: the guest end of its tap (``<tap>p``), with addresses.

    With ``link`` instead of ``tap``, an existing link of the host namespace
    moves in (e.g. ``uplink0p``, the far side of PHYDEV: a peer on the LAN).
    """

    def __init__(self, host, tap=None, mac=None, ipv4=None, ipv6=None, bridge=None, link=None):
        self.name = f"{host.name}-{tap or link}"
        sh("ip", "netns", "add", self.name)
        if link:
            self.dev = link
        else:
            self.dev = f"{tap}p"
            host.add_tap(tap, bridge)
        host.ip("link", "set", self.dev, "netns", self.name)
        self.ip("link", "set", "lo", "up")
        if mac:
            self.ip("link", "set", self.dev, "address", mac)
        self.ip("link", "set", self.dev, "up")
        if ipv4:
            self.ip("addr", "add", ipv4, "dev", self.dev)
        if ipv6:
            self.ip("addr", "add", ipv6, "dev", self.dev, "nodad")

    def ip(self, *args, check=True):
        return sh("ip", "-n", self.name, *args, check=check)

    def probe(self, *args, timeout=10):
        """Run netprobe.py here; its exit code."""
        return subprocess.run(["ip", "netns", "exec", self.name, sys.executable, PROBE,
                               *map(str, args)], capture_output=True, timeout=timeout).returncode

    def ping(self, address):
        """True when one echo request to ``address`` gets its reply."""
        done = subprocess.run(["ip", "netns", "exec", self.name, "ping", "-c1", "-W2", address],
                              capture_output=True, check=False)
        return done.returncode == 0

    def ping_eventually(self, address, attempts=4):
        """True when ``address`` answers within a few tries: for right after a
        switch changed, while Open vSwitch's revalidator threads may still hold
        the old (dropping) datapath flow for a moment."""
        return any(self.ping(address) for _ in range(attempts))

    def start(self, *args):
        """Start a long-running netprobe.py here and wait for its "ready" line."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, sys.executable, PROBE,
                                 *map(str, args)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def delete(self):
        sh("ip", "netns", "del", self.name, check=False)
