"""The firewall backends the functional tests run, and reading what they left in a namespace."""

import os
import re

from support.paths import REPO, TREE
from support.remotes import copy_tree

# How the functional firewall tests run the engine: the default restore
# backend on the host's iptables (nft), the restore backend on iptables-legacy,
# and the iptc backend (python-iptables, legacy only). "nft" (the native backend, its
# own tables) runs only in Debian's kernel under QEMU: the full_kernel tests name it.
FIREWALLS = ("restore-nft", "restore-legacy", "iptc")
_CONF_BACKEND = {"iptc": "iptc", "nft": "nft"}  # flavors with a tree of their own
_IPTABLES_TOOLS = ("iptables", "ip6tables", "iptables-restore", "ip6tables-restore",
                   "iptables-save", "ip6tables-save")


class Firewall:
    """One way of running the firewall engine, and how to read what it did."""

    def __init__(self, flavor, workdir):
        self.flavor = flavor
        self.legacy = flavor in ("restore-legacy", "iptc")
        self.env = {}
        self.tree = TREE
        if self.legacy:
            # put iptables-legacy first on PATH, as update-alternatives would
            bindir = os.path.join(str(workdir), "legacy-bin")
            os.makedirs(bindir, exist_ok=True)
            for tool in _IPTABLES_TOOLS:
                family, _, rest = tool.partition("-")
                target = f"/usr/sbin/{family}-legacy" + (f"-{rest}" if rest else "")
                os.symlink(target, os.path.join(bindir, tool))
            self.env["PATH"] = f"{bindir}:{os.environ.get('PATH', '')}"
        if flavor in _CONF_BACKEND:
            with open(os.path.join(REPO, "etc", "vnm", "OpenNebulaNetwork.conf"),
                      encoding="utf-8") as handle:
                conf = handle.read().replace(":firewall_backend: restore",
                                             f":firewall_backend: {_CONF_BACKEND[flavor]}")
            assert f":firewall_backend: {_CONF_BACKEND[flavor]}" in conf
            self.tree = copy_tree(os.path.join(str(workdir), "remotes"), conf)

    def tool(self, name):
        family, _, rest = name.partition("-")
        if not self.legacy:
            return name
        return f"{family}-legacy" + (f"-{rest}" if rest else "")

    def rules(self, ns, family=4):
        """``iptables -S`` lines of the namespace, with the right iptables."""
        tool = self.tool("iptables" if family == 4 else "ip6tables")
        return ns.exec(tool, "-w", "-S").splitlines()

    def save(self, ns, family=4):
        """``iptables-save -t filter`` without comments and counters."""
        tool = self.tool("iptables-save" if family == 4 else "ip6tables-save")
        return [re.sub(r"\[\d+:\d+\]$", "[0:0]", line)
                for line in ns.exec(tool, "-t", "filter").splitlines()
                if not line.startswith("#")]

    def run(self, ns, driver, action, *args, stdin=b"", env=None):
        full = dict(self.env, **(env or {}))
        return ns.run(driver, action, *args, stdin=stdin, tree=self.tree, env=full)


def ipsets(ns):
    """{set name: set of members} from ``ipset save`` (order-free)."""
    sets = {}
    for line in ns.exec("ipset", "save").splitlines():
        words = line.split()
        if words[0] == "create":
            sets[words[1]] = set()
        elif words[0] == "add":
            sets[words[1]].add(words[2])
    return sets
