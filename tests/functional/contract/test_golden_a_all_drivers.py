"""Golden A replayed whole: bridge, fw and vxlan on one host, every step in the reference's order.

After each step the complete namespace state equals the reference's: every
link, every bridge port, the vxlan device's MTU, ``iptables -S``,
``ip6tables -S`` and the ipset names (the reference ran as root in a namespace
holding the same uplinks and veth stand-in taps).
"""

import re

from support import golden
from support.firewall import ipsets
from support.paths import fixture_bytes

VM7 = fixture_bytes("vm7_vnm_reduced.b64")
VM7_DETACH = fixture_bytes("vm7_attach_nic1_reduced.b64")
VM7_UPDATE = fixture_bytes("vm7_full_update_nic_mtu.b64")
DRIVERS = ("bridge", "fw", "vxlan")
TAPS = {"one-7-0": "br0", "one-7-1": "onebr1", "one-7-2": "onebr.100"}


def replay(ns, step, stdin):
    driver, action, args = golden.argv("A", step)
    done = ns.run(driver, action, *args, stdin=stdin)
    assert done.returncode == golden.rc("A", step), f"{step}: {done.stderr.decode()}"


def port_mtus(ns):
    return {name: link["mtu"] for name, link in ns.links().items() if link["master"]}


def reference_mtus(state_file):
    mtus = {}
    for line in golden.section("A", state_file, "bridge link"):
        match = re.match(r"^(\S+?)(@\S+)?: .* mtu (\d+) master", line)
        mtus[match.group(1)] = int(match.group(3))
    return mtus


def assert_state(ns, state_file, firewall_file=None):
    """``firewall_file``: the trace whose rules and sets are expected (default ``state_file``)."""
    links, masters = golden.state("A", state_file)
    have = ns.links()
    assert set(have) == links, state_file
    assert {n: link["master"] for n, link in have.items() if link["master"]} == masters
    assert port_mtus(ns) == reference_mtus(state_file)
    firewall_file = firewall_file or state_file
    # vnm's connlimit rules are a deliberate addition: checked, then left out (golden.py)
    for tool in ("iptables", "ip6tables"):
        assert golden.without_guards(ns.exec(tool, "-w", "-S").splitlines()) == \
            golden.section("A", firewall_file, f"{tool} -S")
    assert sorted(ipsets(ns)) == golden.section("A", firewall_file, "ipset list -name")


def test_scenario_a_every_driver_every_step(ns):
    for driver in DRIVERS:
        replay(ns, f"01-pre-{driver}", VM7)
    # vnm protects in pre (:protect_in_pre:, docs/differences.md): the links are the
    # reference's after pre, the rules and sets already those it makes in post
    assert_state(ns, "01-after-pre.state", firewall_file="02-after-post.state")
    vxlan = ns.links()["uplink0.100"]
    assert vxlan["kind"] == "vxlan" and vxlan["data"]["id"] == 100
    assert vxlan["data"]["group"] == "239.0.0.100" and vxlan["data"]["ttl"] == 16
    for tap, bridge in TAPS.items():  # the hypervisor plugs the VM in
        ns.add_tap(tap, bridge)
    for driver in DRIVERS:
        replay(ns, f"02-post-{driver}", VM7)
    assert_state(ns, "02-after-post.state")
    for driver in DRIVERS:
        replay(ns, f"03-update_sg-{driver}", VM7)
    assert_state(ns, "03-after-update_sg.state")
    replay(ns, "04-update_nic-vxlan-mtu", VM7_UPDATE)
    assert_state(ns, "04-after-update_nic.state")
    ns.ip("link", "del", "one-7-1")  # hot-detach of NIC 1: the hypervisor first
    for driver in DRIVERS:
        replay(ns, f"05-detach-nic1-clean-{driver}", VM7_DETACH)
    assert_state(ns, "05-after-detach.state")
    for tap in ("one-7-0", "one-7-2"):
        ns.ip("link", "del", tap)
    for driver in DRIVERS:
        replay(ns, f"06-clean-{driver}", VM7)
    assert_state(ns, "06-after-clean.state")
