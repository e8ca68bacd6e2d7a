"""vnm gc and status know nodeport's nat chains and the TProxy's veth.

A dead nodeport VM (its tap gone, its record old) leaves ``one-<vm>-<nic>-dnat``
and ``-snat`` in the nat table: they keep forwarding its host ports, and
nodeport refuses those ports to a new VM. status shows them for the NIC and
flags them, gc lists them, and with ``--apply`` removes them (re-checked under
the firewall lock: a tap that came back keeps them), through either backend.

A bridge whose only port is its TProxy veth ``<BR>b`` is empty: gc deletes it
and releases its TProxy as ``clean`` does (namespace ``one_tproxy_<BR>``, ARP
chain, services, the daemon with the last bridge). A veth that merely has that
name (its peer not in the namespace) stays a guest and keeps its bridge.
"""

import glob
import json
import os
import signal
import subprocess
import time

import pytest

from support.assertions import assert_ok
from support.commands import sh
from support.fault_injection import path_with, vnm, vnm_argv, vnm_env, wrap
from support.firewall import Firewall
from support.hostlike import run_action
from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import PYTHON, REPO
from support.remotes import copy_tree


def age_records(ns, user):
    """Make ``user``'s records older than gc_record_grace: its VM died long ago."""
    for record in glob.glob(os.path.join(ns.run_dir, "users", "*", "*", user)):
        os.utime(record, (0, 0))


# -- nodeport's nat chains ---------------------------------------------------------------

def nodeport_vm(vm_id, first):
    return b64(vm_xml(vm_id, [bridge_nic(
        vm_id, 0, "gcnp", VN_MAD="nodeport", IP=f"10.9.2.{vm_id}", GATEWAY="10.9.2.1",
        EXTERNAL_PORT_RANGE=f"{first}:{first + 99}", INTERNAL_PORT_RANGE=f"1-100/{first}")]))


def nat_of(fw, ns, base):
    return [line for line in ns.exec(fw.tool("iptables"), "-w", "-t", "nat", "-S").splitlines()
            if f"{base}-" in line]


def gc(fw, ns, *args, env=None):
    done = vnm(ns, "gc", "--tree", fw.tree, "--live", "", "--json", *args,
               env=dict(fw.env, **(env or {})))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def start_dead_nodeport_vm(fw, ns):
    """VM 10 forwards host ports 9001-9100, then dies without clean."""
    stdin = nodeport_vm(10, 9001)
    assert_ok(fw.run(ns, "nodeport", "pre", stdin=stdin))
    ns.add_tap("one-10-0", "gcnp")
    assert_ok(fw.run(ns, "nodeport", "post", "one-10", stdin=stdin))
    ns.ip("link", "del", "one-10-0")
    age_records(ns, "10-0")


NAT_ROW = {"vm": 10, "nic": 0, "remove": "nat", "what": "one-10-0"}


@pytest.mark.parametrize("flavor", ["restore-nft", "iptc"])
def test_gc_removes_a_dead_nodeport_vms_nat_chains(ns, tmp_path, flavor):
    fw = Firewall(flavor, tmp_path)
    start_dead_nodeport_vm(fw, ns)
    chains = nat_of(fw, ns, "one-10-0")
    assert "-A PREROUTING -j one-10-0-dnat" in chains

    done = vnm(ns, "status", "--json", "--tree", fw.tree, env=fw.env)
    [nic] = [n for n in json.loads(done.stdout) if (n["vm"], n["nic"]) == (10, 0)]
    assert done.returncode == 1
    assert nic["nat"] == {"one-10-0-dnat": 1, "one-10-0-snat": 1}
    assert "nat chains but no tap (VM gone? its host ports stay forwarded)" in nic["problems"]
    table = vnm(ns, "status", "--tree", fw.tree, env=fw.env).stdout
    assert "dnat:1 snat:1" in table

    # its ports are refused to a new VM while the dead one's chains forward them
    intruder = nodeport_vm(11, 9050)
    assert_ok(fw.run(ns, "nodeport", "pre", stdin=intruder))
    ns.add_tap("one-11-0", "gcnp")
    refused = fw.run(ns, "nodeport", "post", "one-11", stdin=intruder)
    assert refused.returncode != 0 and b"forwarded to VM 10 NIC 0" in refused.stderr

    rows, _ = gc(fw, ns)  # dry run: listed, nothing changes
    assert NAT_ROW in rows
    assert nat_of(fw, ns, "one-10-0") == chains

    rows, _ = gc(fw, ns, "--apply")
    assert NAT_ROW in rows
    assert nat_of(fw, ns, "one-10-0") == []
    assert_ok(fw.run(ns, "nodeport", "post", "one-11", stdin=intruder))  # the ports are free
    assert nat_of(fw, ns, "one-11-0")
    assert_ok(fw.run(ns, "nodeport", "clean", stdin=intruder))


def test_gc_keeps_the_nat_chains_of_a_nic_whose_tap_came_back(ns, tmp_path):
    fw = Firewall("restore-nft", tmp_path)
    start_dead_nodeport_vm(fw, ns)
    chains = nat_of(fw, ns, "one-10-0")
    bindir = os.path.join(str(tmp_path), "bin")
    wrap(bindir, "ip", "pause-after", nth=1, seconds=1.5)  # gc's snapshot, then a pause
    gc_run = subprocess.Popen(vnm_argv(ns, "gc", "--tree", fw.tree, "--live", "", "--apply"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=vnm_env(ns, PATH=path_with(bindir)))
    time.sleep(0.8)
    ns.add_tap("one-10-0", "gcnp")  # back (a migration returning) while gc looked away
    out, err = gc_run.communicate(timeout=60)
    assert gc_run.returncode == 0, out + err
    assert "kept nat one-10-0: tap one-10-0 exists again" in err
    assert nat_of(fw, ns, "one-10-0") == chains


# -- the TProxy's veth --------------------------------------------------------------------

TAG = os.getpid() % 100000
# one_tproxy_<BR> is a name of the machine's: the pid keeps it apart from another run's
PROXIED, PLAIN = f"gt{TAG}a", f"gt{TAG}p"
TPROXY_CONF = """\
:tproxy:
- :service_port: 5030
  :remote_addr: 192.0.2.2
  :remote_port: 8080
  :networks: [0]
"""


def tproxy_vm(vm_id, bridge, network_id):
    return b64(vm_xml(vm_id, [bridge_nic(vm_id, 0, bridge, NETWORK_ID=network_id)]))


def daemon_pid(ns):
    """The TProxy daemon's pid while it runs, else None."""
    for path in glob.glob(os.path.join(ns.run_dir, "tproxy", "net*", "pid")):
        try:
            with open(path, encoding="ascii") as handle:
                pid = int(handle.read())
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if b"tproxy_daemon.py" in handle.read():
                    return pid
        except (OSError, ValueError):
            pass
    return None


@pytest.fixture
def tproxy_host(ns, tmp_path):
    tree = copy_tree(tmp_path / "remotes", TPROXY_CONF)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    try:
        yield ns, tree, str(hosts)
    finally:
        pid = daemon_pid(ns)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        for bridge in (PROXIED, PLAIN):
            sh("ip", "netns", "del", f"one_tproxy_{bridge}", check=False)


def host_gc(ns, tree, hosts, *args):
    """vnm gc as root runs it on a hypervisor: the machine's /run/netns names in view."""
    done = run_action(ns, hosts, [PYTHON, "-m", "vnmlib.cli", "gc", "--tree", tree, "--live", "",
                                  "--json", *args], env={"PYTHONPATH": REPO})
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout), done.stderr.decode()


def test_gc_deletes_a_bridge_left_with_its_tproxy_veth_and_releases_the_tproxy(tproxy_host):
    ns, tree, hosts = tproxy_host
    script = os.path.join(tree, "bridge", "pre")
    for vm_id, bridge, network_id in ((71, PROXIED, 0), (72, PLAIN, 1)):
        assert_ok(run_action(ns, hosts, [PYTHON, script], tproxy_vm(vm_id, bridge, network_id)))
        age_records(ns, f"{vm_id}-0")  # both VMs died without clean, long ago
    # on the bridge without TProxy, a guest's veth that merely has the TProxy's name
    ns.ip("link", "add", f"{PLAIN}b", "master", PLAIN, "type", "veth", "peer", "name", "gtpeer")
    links = ns.links()
    assert links[f"{PROXIED}b"]["master"] == PROXIED and daemon_pid(ns) is not None
    state = glob.glob(os.path.join(ns.run_dir, "tproxy", "net*", "bridges", f"{PROXIED}.json"))
    assert state and os.path.exists(f"/run/netns/one_tproxy_{PROXIED}")

    rows, _ = host_gc(ns, tree, hosts)  # dry run
    removed = {(r["remove"], r["what"]) for r in rows}
    assert {("bridge", PROXIED), ("tproxy", PROXIED)} <= removed
    assert ("bridge", PLAIN) not in removed and ("tproxy", PLAIN) not in removed
    assert PROXIED in ns.links() and os.path.exists(f"/run/netns/one_tproxy_{PROXIED}")

    rows, err = host_gc(ns, tree, hosts, "--apply")
    links = ns.links()
    assert PROXIED not in links and f"{PROXIED}b" not in links, err
    assert not os.path.exists(f"/run/netns/one_tproxy_{PROXIED}")
    assert not os.path.exists(state[0]) and daemon_pid(ns) is None  # the last bridge's daemon
    nft = subprocess.run(["ip", "netns", "exec", ns.name, "nft", "list", "table", "bridge",
                          "one_tproxy"], capture_output=True, check=False)
    assert nft.returncode != 0  # the table went with its last chain
    assert links[f"{PLAIN}b"]["master"] == PLAIN, err  # a guest: its bridge stays
