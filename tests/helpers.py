"""Test helpers: namespaces, running the real action scripts, reading kernel state.

Everything a functional test changes lives in a network namespace it created
(unique name) and removed afterwards; kernel state is read back with iproute2
(``ip -j``, ``bridge -j``), never with vnmlib itself.
"""

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE = os.path.join(REPO, "vnm")
SHARED = os.environ.get("VNM_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
FIXTURES = os.path.join(SHARED, "fixtures", "opennebula")
GOLDEN = os.path.join(SHARED, "golden")
# The interpreter the action scripts run with: the test's own (venv with PyPI
# versions) unless VNM_TEST_PYTHON names another (Debian's /usr/bin/python3).
PYTHON = os.environ.get("VNM_TEST_PYTHON") or sys.executable

_counter = itertools.count()


def fixture_bytes(name):
    with open(os.path.join(FIXTURES, name), "rb") as handle:
        return handle.read()


def b64(xml):
    if isinstance(xml, str):
        xml = xml.encode()
    return base64.b64encode(xml)


def sh(*args, check=True, input=None):
    """Run a command (argv list), return stdout as text."""
    done = subprocess.run(list(args), input=input, capture_output=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}): {done.stderr.decode()}")
    return done.stdout.decode()


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


def copy_tree(remotes, conf=None):
    """Lay the remotes out as ``vnm install`` does for ``onehost sync``; returns the ``vnm/`` tree.

    ``<remotes>/vnm/…`` with vnmlib (byte-compiled) inside it; ``<remotes>/etc/vnm/``
    holding ``conf`` as OpenNebulaNetwork.conf when given, no conf file (the
    built-in defaults) otherwise.
    """
    if REPO not in sys.path:  # the benches use this too, from bench/
        sys.path.insert(0, REPO)
    from vnmlib.ops.install import install

    remotes = str(remotes)
    install(remotes)
    path = os.path.join(remotes, "etc", "vnm", "OpenNebulaNetwork.conf")
    if conf is None:
        os.unlink(path)
    else:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(conf)
    return os.path.join(remotes, "vnm")


def assert_ok(done):
    assert done.returncode == 0, done.stderr.decode()
    return done


def assert_one_error(done, *needles):
    """Failure with exactly one ERROR line that mentions every needle."""
    err = done.stderr.decode()
    assert done.returncode != 0, err
    errors = [line for line in err.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert "Traceback" not in err
    # OpenNebula's driver layer keeps the unprefixed stderr lines as the VM's
    # ERROR text (DriverExecHelper#get_info_from_execution): the reason is there
    reason = errors[0].split(": ", 2)[2]
    assert reason in failure_text(err), err
    return errors[0]


def failure_text(stderr):
    """What oned stores in the VM's ERROR attribute: the stderr lines without a log prefix."""
    return "\n".join(line for line in stderr.splitlines()
                     if not line.startswith(("ERROR:", "INFO:", "WARN:", "DEBUG:")))


def vm_xml(vm_id, nics, extra="", deploy_id=None, vm_mad="kvm"):
    """A reduced VM as oned builds it: one sibling <TEMPLATE> per NIC, CDATA values."""
    def element(tag, attrs):
        body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in attrs.items())
        return f"<TEMPLATE><{tag}>{body}</{tag}></TEMPLATE>"

    parts = [f"<VM><ID>{vm_id}</ID><DEPLOY_ID>{deploy_id or f'one-{vm_id}'}</DEPLOY_ID>"]
    for nic in nics:
        nic = dict(nic)
        tag = nic.pop("_tag", "NIC")
        parts.append(element(tag, nic))
    parts.append(extra)
    parts.append(f"<HISTORY_RECORDS><HISTORY><VM_MAD><![CDATA[{vm_mad}]]></VM_MAD>"
                 "</HISTORY></HISTORY_RECORDS></VM>")
    return "".join(parts)


def bridge_nic(vm_id, nic_id, bridge, phydev=None, **extra):
    nic = {"NIC_ID": nic_id, "BRIDGE": bridge, "VN_MAD": extra.pop("VN_MAD", "bridge"),
           "TARGET": f"one-{vm_id}-{nic_id}", "MAC": f"02:00:0a:00:{vm_id:02x}:{nic_id:02x}"}
    if phydev:
        nic["PHYDEV"] = phydev
    nic.update(extra)
    return nic


# -- firewall ---------------------------------------------------------------

# How the functional firewall tests run the engine: the default restore
# backend on the host's iptables (nft), the restore backend on iptables-legacy,
# and the iptc backend (python-iptables, legacy only).
FIREWALLS = ("restore-nft", "restore-legacy", "iptc")
_IPTABLES_TOOLS = ("iptables", "ip6tables", "iptables-restore", "ip6tables-restore",
                   "iptables-save", "ip6tables-save")


class Firewall:
    """One way of running the firewall engine, and how to read what it did."""

    def __init__(self, flavor, workdir):
        self.flavor = flavor
        self.legacy = flavor != "restore-nft"
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
        if flavor == "iptc":
            with open(os.path.join(REPO, "etc", "vnm", "OpenNebulaNetwork.conf"),
                      encoding="utf-8") as handle:
                conf = handle.read().replace(":firewall_backend: restore",
                                             ":firewall_backend: iptc")
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


def rules_xml(*rules):
    """SECURITY_GROUP_RULE elements, one sibling <TEMPLATE> each, as oned sends them."""
    return "".join("<TEMPLATE><SECURITY_GROUP_RULE>"
                   + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in rule.items())
                   + "</SECURITY_GROUP_RULE></TEMPLATE>" for rule in rules)


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
                                 *map(str, args)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def delete(self):
        sh("ip", "netns", "del", self.name, check=False)


def stop(proc):
    """End a process this test started (by pid), and reap it."""
    proc.kill()
    proc.wait()


@contextlib.contextmanager
def unprivileged_user(name="vnmtest"):
    """A system user standing in for oneadmin (made if missing, removed after) and a
    0755 directory under /var/tmp for what it owns; yields the directory."""
    import pwd
    import tempfile

    created = False
    try:
        pwd.getpwnam(name)
    except KeyError:
        sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name)
        created = True
    base = tempfile.mkdtemp(prefix="vnm-user-", dir="/var/tmp")
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if created:
            sh("userdel", name, check=False)
