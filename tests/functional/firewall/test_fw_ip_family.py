"""A security-group rule's ``IP`` may be an IPv6 address: its family decides the chains.

oned accepts ``IP=2001:db8::`` + ``SIZE`` in a rule, and the reference's
``to_nets`` puts those CIDRs in the IPv6 sets and chains. vnm refused the rule
(``IP '2001:db8:161::' is not an IPv4 address``), so the whole deploy failed
and oned rolled the VM back.

    B (fd51::100, 10.51.1.40)  ──┐
    C (fd51::102, 10.51.1.44)  ──┤ ipbr ── VM A 50 (fd51::10, 10.51.0.10)

A admits TCP 9000 from ``IP=fd51::fe SIZE=4`` (fd51::fe/127 + fd51::100/127:
the range crosses a CIDR boundary) and from ``IP=10.51.0.0 SIZE=300``
(10.51.0.0/24, 10.51.1.0/27, 10.51.1.32/29, 10.51.1.40/30, as the reference's
trace shows for 10.0.0.0 + 300).
"""

import ipaddress

import pytest

from support.assertions import assert_ok
from support.commands import stop
from support.firewall import ipsets
from support.namespaces import Guest
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml

A = dict(mac="02:00:0a:33:00:0a", ip="10.51.0.10", ip6="fd51::10")
RULES = [
    dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", SECURITY_GROUP_ID=100, RANGE="9000",
         IP="fd51::fe", SIZE="4"),
    dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", SECURITY_GROUP_ID=100, RANGE="9000",
         IP="10.51.0.0", SIZE="300"),
    dict(PROTOCOL="ALL", RULE_TYPE="OUTBOUND", SECURITY_GROUP_ID=100),
]
VM = b64(vm_xml(50, [bridge_nic(50, 0, "ipbr", None, VN_MAD="fw", IP=A["ip"], IP6=A["ip6"],
                                MAC=A["mac"], SECURITY_GROUPS="100")], extra=rules_xml(*RULES)))


@pytest.fixture
def site(ns):
    assert_ok(ns.run("fw", "pre", stdin=VM))
    guests = {"A": Guest(ns, "one-50-0", A["mac"], f"{A['ip']}/16", f"{A['ip6']}/64",
                         bridge="ipbr")}
    assert_ok(ns.run("fw", "post", "one-50", "h", stdin=VM))
    guests["B"] = Guest(ns, "peer-b", None, "10.51.1.40/16", "fd51::100/64", bridge="ipbr")
    guests["C"] = Guest(ns, "peer-c", None, "10.51.1.44/16", "fd51::102/64", bridge="ipbr")
    server = guests["A"].start("serve", "--tcp", "9000")
    yield ns, guests
    stop(server)
    for guest in guests.values():
        guest.delete()


def test_an_ipv6_ip_goes_to_the_ipv6_sets_and_filters_by_family(site):
    ns, guests = site
    sets = ipsets(ns)
    # net + port rules: hash:net,port sets, one per family
    nets6, nets4 = sets["one-50-0-100-i-nr-inet6"], sets["one-50-0-100-i-nr-inet"]
    wanted6 = {str(n) for n in ipaddress.summarize_address_range(
        ipaddress.ip_address("fd51::fe"), ipaddress.ip_address("fd51::101"))}
    assert wanted6 == {"fd51::fe/127", "fd51::100/127"}
    assert nets6 == {f"{net},tcp:9000" for net in wanted6}
    assert nets4 == {f"{net},tcp:9000" for net in ("10.51.0.0/24", "10.51.1.0/27",
                                                     "10.51.1.32/29", "10.51.1.40/30")}
    b, c = guests["B"], guests["C"]
    assert b.probe("tcp", A["ip6"], 9000) == 0  # fd51::100: in the IPv6 range
    assert c.probe("tcp", A["ip6"], 9000) == 1  # fd51::102: past it
    assert b.probe("tcp", A["ip"], 9000) == 0  # 10.51.1.40: in the IPv4 range
    assert c.probe("tcp", A["ip"], 9000) == 1  # 10.51.1.44: past it
