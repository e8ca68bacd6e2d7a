"""TProxy: VMs reach a service (OneGate) at 169.254.16.9, relayed by vnm's proxy, with real traffic.

Topology (every namespace made and removed here):

    front-end FE 192.0.2.2 (HTTP :8080 answers "8080", :8081 answers "8081")
         │ uplink0p ── uplink0 192.0.2.1
    host H ── bridge A (network 0 "vnet-a", PHYDEV uplink1; a LAN peer on uplink1p)
          ├── bridge B (network 1 "vnet-b")
          ├── bridge C (network 2 "vnet-c": no :tproxy: entry takes it)
          └── bridge Q (network 3 "vnet-q", vxlan VNI 50 on uplink1: the VLAN-backed
                        drivers' path; 802.1Q needs the 8021q module this kernel lacks)

The conf gives bridge A 5030 -> 192.0.2.2:8080 and bridge B 5030 -> onegate.test:8081,
and both 5031 -> onegate.test:8081. ``onegate.test`` is only in this test's
hosts file, bind-mounted on /etc/hosts in a private mount namespace for every
action (and so for the daemon they start; support/hostlike.py); the machine's
/etc/hosts is untouched.

The tests of the ``site`` share one host and daemon and run in file order:
services, then the killed daemon, then the clean-ups.
"""

import glob
import json
import os
import signal
import subprocess
import sys

import pytest

from support.assertions import assert_ok, assert_one_error
from support.commands import sh, stop
from support.hostlike import run_action
from support.namespaces import Guest, Namespace
from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import PYTHON
from support.remotes import copy_tree

TAG = os.getpid() % 100000
# one_tproxy_<BR> names are the host's: the pid keeps them apart from another run's
BRIDGES = {"A": f"tp{TAG}a", "B": f"tp{TAG}b", "C": f"tp{TAG}c", "Q": f"tp{TAG}q"}
NETWORKS = {"A": (0, "vnet-a"), "B": (1, "vnet-b"), "C": (2, "vnet-c"), "Q": (3, "vnet-q")}
VMS = {"A": 20, "B": 21, "C": 22, "Q": 23}
FE_IP = "192.0.2.2"
SERVICE = "169.254.16.9"

CONF = f"""\
:tproxy:
- :service_port: 5030
  :remote_addr: {FE_IP}
  :remote_port: 8080
  :networks: [0, 3]
- :service_port: 5030
  :remote_addr: onegate.test
  :remote_port: 8081
  :networks: [vnet-b]
- :service_port: 5031
  :remote_addr: onegate.test
  :remote_port: 8081
  :networks: [0, "1"]
"""

GET = ("import sys, urllib.request\n"
       "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
       "print(opener.open(sys.argv[1], timeout=float(sys.argv[2])).read().decode(), end='')\n")


class Site:
    def __init__(self, ns, tree, hosts):
        self.ns = ns
        self.tree = tree
        self.hosts = hosts
        self.guests = {}

    def run(self, driver, action, *args, stdin):
        """The action as on a hypervisor (names in /run/netns outlive it), /etc/hosts the test's."""
        script = os.path.join(self.tree, driver, action)
        return run_action(self.ns, self.hosts, [PYTHON, script, *args], stdin)

    def state_dir(self):
        found = glob.glob(os.path.join(self.ns.run_dir, "tproxy", "net*"))
        return found[0] if found else None

    def daemon_pid(self):
        """The pid in the daemon's pid file when that process runs, else None."""
        directory = self.state_dir()
        try:
            with open(os.path.join(directory, "pid"), encoding="ascii") as handle:
                pid = int(handle.read())
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                return pid if b"tproxy_daemon.py" in handle.read() else None
        except (OSError, TypeError, ValueError):
            return None


def stdin_of(key):
    network_id, name = NETWORKS[key]
    extra = {"A": {"PHYDEV": "uplink1"},
             "Q": {"PHYDEV": "uplink1", "VLAN_ID": 50, "VN_MAD": "vxlan", "MTU": 1450}}.get(key, {})
    nic = bridge_nic(VMS[key], 0, BRIDGES[key], NETWORK_ID=network_id, NETWORK=name, **extra)
    return b64(vm_xml(VMS[key], [nic]))


def get(guest, port, host=SERVICE, timeout=3):
    """The body of an HTTP GET to ``host``:``port`` from ``guest``, None when it fails."""
    done = subprocess.run(["ip", "netns", "exec", guest.name, sys.executable, "-c", GET,
                           f"http://{host}:{port}/whoami", str(timeout)],
                          capture_output=True, timeout=20)
    return done.stdout.decode() if done.returncode == 0 else None


def netns_exists(key):
    return os.path.exists(f"/run/netns/one_tproxy_{BRIDGES[key]}")


def tproxy_chains(ns):
    done = subprocess.run(["ip", "netns", "exec", ns.name, "nft", "-j", "list", "table",
                           "bridge", "one_tproxy"], capture_output=True, check=False)
    if done.returncode != 0:
        return None  # no table
    return {item["chain"]["name"] for item in json.loads(done.stdout)["nftables"]
            if "chain" in item}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("tproxy")
    run_dir = base / "run"
    run_dir.mkdir()
    ns = Namespace(str(run_dir))
    hosts = base / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{FE_IP} onegate.test\n")
    site = Site(ns, copy_tree(base / "remotes", CONF), str(hosts))
    servers = []
    try:
        ns.ip("addr", "add", "192.0.2.1/24", "dev", "uplink0")
        front_end = Guest(ns, link="uplink0p", ipv4=f"{FE_IP}/24")
        site.guests["FE"] = front_end
        for port in (8080, 8081):
            root = base / f"www{port}"
            root.mkdir()
            (root / "whoami").write_text(str(port))
            servers.append(subprocess.Popen(
                ["ip", "netns", "exec", front_end.name, sys.executable, "-m", "http.server",
                 str(port), "--bind", FE_IP, "--directory", str(root)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in (8080, 8081):
            for _ in range(50):
                if get(front_end, port, FE_IP) == str(port):
                    break
                subprocess.run(["sleep", "0.1"], check=False)
            else:
                pytest.fail(f"the front-end's HTTP server on {port} did not start")
        site.guests["LAN"] = Guest(ns, link="uplink1p")
        yield site
    finally:
        for server in servers:
            stop(server)
        pid = site.daemon_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        for guest in site.guests.values():
            guest.delete()
        for bridge in BRIDGES.values():
            sh("ip", "netns", "del", f"one_tproxy_{bridge}", check=False)
        ns.delete()


def driver(key):
    return "vxlan" if key == "Q" else "bridge"


def boot(site, key):
    """pre, then the hypervisor's tap and the VM's address; 169.254.16.9 on-link."""
    assert_ok(site.run(driver(key), "pre", stdin=stdin_of(key)))
    vm_id = VMS[key]
    guest = Guest(site.ns, f"one-{vm_id}-0", f"02:00:0a:00:{vm_id:02x}:00",
                  f"10.{vm_id}.0.10/24", bridge=BRIDGES[key])
    guest.ip("route", "add", f"{SERVICE}/32", "dev", guest.dev)
    site.guests[key] = guest
    return guest


def test_each_bridge_relays_its_own_services(site):
    vm_a, vm_b, vm_c = boot(site, "A"), boot(site, "B"), boot(site, "C")
    assert get(vm_a, 5030) == "8080"
    assert get(vm_a, 5031) == "8081"  # onegate.test, from the test's hosts file
    assert get(vm_b, 5030) == "8081"  # same service port, B's own remote
    assert get(vm_b, 5031) == "8081"
    assert get(vm_a, 5032) is None  # nothing else listens
    # :networks: takes neither network 2 nor its bridge
    links = site.ns.links()
    assert f"{BRIDGES['C']}b" not in links and not netns_exists("C")
    assert get(vm_c, 5030, timeout=1) is None  # nobody answers its ARP
    assert links[f"{BRIDGES['A']}b"]["master"] == BRIDGES["A"]
    assert tproxy_chains(site.ns) == {f"ch_{BRIDGES['A']}", f"ch_{BRIDGES['B']}"}


def test_arp_for_the_service_stays_on_the_bridge(site):
    """The VM's ARP request for 169.254.16.9 never leaves by the uplink; others do."""
    vm_a, lan = site.guests["A"], site.guests["LAN"]
    vm_a.ip("neigh", "flush", "all")
    sniff = lan.start("sniff", "uplink1p", 1, "arp", "10.20.0.10")
    assert get(vm_a, 5030) == "8080"
    assert sniff.stdout.readline().strip() == "0"
    sniff.wait()
    sniff = lan.start("sniff", "uplink1p", 1, "arp", "10.20.0.10")
    assert get(vm_a, 80, host="10.20.0.99", timeout=0.5) is None  # its ARP request floods
    assert int(sniff.stdout.readline()) >= 1
    sniff.wait()


def test_vxlan_bridges_get_it_too(site):
    vm_q = boot(site, "Q")
    assert get(vm_q, 5030) == "8080"
    rules = sh("ip", "netns", "exec", site.ns.name, "nft", "list", "chain", "bridge",
               "one_tproxy", f"ch_{BRIDGES['Q']}")
    assert 'oifname "uplink1.50"' in rules and 'iifname "uplink1.50"' in rules
    assert '"uplink1"' not in rules  # PHYDEV is no port of this bridge (it is bridge A's)
    site.ns.ip("link", "del", f"one-{VMS['Q']}-0")
    site.guests.pop("Q").delete()
    assert_ok(site.run("vxlan", "clean", stdin=stdin_of("Q")))
    links = site.ns.links()
    assert not {BRIDGES["Q"], f"{BRIDGES['Q']}b", "uplink1.50"} & set(links)
    assert not netns_exists("Q")
    assert get(site.guests["A"], 5030) == "8080"  # the others' TProxy is untouched


def test_a_killed_proxy_is_restarted_by_the_next_action(site):
    pid = site.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):  # reaped by init: its /proc entry goes
        if site.daemon_pid() is None:
            break
        subprocess.run(["sleep", "0.05"], check=False)
    assert get(site.guests["A"], 5030) is None
    assert_ok(site.run("bridge", "pre", stdin=stdin_of("B")))  # pre is idempotent
    assert site.daemon_pid() not in (None, pid)
    assert get(site.guests["A"], 5030) == "8080"
    assert get(site.guests["B"], 5030) == "8081"


def test_clean_removes_a_bridges_tproxy_and_the_last_stops_the_proxy(site):
    ns, pid = site.ns, site.daemon_pid()
    for key in ("A", "C"):
        ns.ip("link", "del", f"one-{VMS[key]}-0")  # the VM is gone before clean
        site.guests.pop(key).delete()
        assert_ok(site.run("bridge", "clean", stdin=stdin_of(key)))
    links = ns.links()
    # bridge A held only its TProxy veth: not a guest, so the bridge went, its TProxy too
    assert BRIDGES["A"] not in links and f"{BRIDGES['A']}b" not in links
    assert not netns_exists("A") and tproxy_chains(ns) == {f"ch_{BRIDGES['B']}"}
    assert site.daemon_pid() == pid  # B still uses it: reloaded, not stopped
    assert get(site.guests["B"], 5030) == "8081"

    ns.ip("link", "del", f"one-{VMS['B']}-0")
    site.guests.pop("B").delete()
    assert_ok(site.run("bridge", "clean", stdin=stdin_of("B")))
    assert BRIDGES["B"] not in ns.links() and not netns_exists("B")
    assert tproxy_chains(ns) is None
    assert site.daemon_pid() is None
    assert os.listdir(os.path.join(site.state_dir(), "bridges")) == []
    assert_ok(site.run("bridge", "clean", stdin=stdin_of("B")))  # again: nothing to do


@pytest.mark.parametrize("entry, needles", [
    ("- :service_port: 5030\n  :remote_addr: '10.0.0.1 -j ACCEPT'\n  :remote_port: 5030\n",
     (":tproxy: entry 1", ":remote_addr:", "not an IPv4 address or a host name")),
    ("- :service_port: 0\n  :remote_addr: 10.0.0.1\n  :remote_port: 5030\n",
     (":tproxy: entry 1", ":service_port: 0", "1..65535")),
    ("- :service_port: 5030\n  :remote_addr: 10.0.0.1\n",
     (":tproxy: entry 1", ":remote_port: is missing")),
    ("  :service_port: 5030\n", (":tproxy: must be a list",)),
])
def test_a_bad_tproxy_conf_is_one_line_and_no_change(tmp_path, ns, entry, needles):
    tree = copy_tree(tmp_path / "remotes", ":tproxy:\n" + entry)
    nic = bridge_nic(30, 0, f"tp{TAG}x", NETWORK_ID=0)
    done = ns.run("bridge", "pre", stdin=b64(vm_xml(30, [nic])), tree=tree)
    assert_one_error(done, *needles)
    assert f"tp{TAG}x" not in ns.links()
    assert not os.path.exists(f"/run/netns/one_tproxy_tp{TAG}x")


def test_a_foreign_device_named_like_the_veth_is_never_taken(tmp_path, ns):
    """A VM's device may carry the name <BR>b (TARGET is the user's): pre refuses it, the
    bridge it made is removed, the device is left as it was."""
    bridge = f"tp{TAG}f"
    ns.ip("link", "add", f"{bridge}b", "type", "veth", "peer", "name", f"{bridge}x")
    tree = copy_tree(tmp_path / "remotes", CONF)
    done = ns.run("bridge", "pre", stdin=b64(vm_xml(31, [bridge_nic(31, 0, bridge, NETWORK_ID=0)])),
                  tree=tree)
    assert_one_error(done, f"{bridge}b exists and is not vnm's TProxy veth")
    links = ns.links()
    assert bridge not in links and links[f"{bridge}b"]["master"] is None
    assert not links[f"{bridge}b"]["up"]
    assert not os.path.exists(f"/run/netns/one_tproxy_{bridge}")
