"""The iptc backend reads rules back as ``iptables -S`` prints them (python-iptables, no kernel).

Its listings feed deletions (a jump is found again by its tokens), nodeport's
overlap check (the ``--dport`` of other NICs' DNAT rules) and ``vnm status``;
so every rule shape vnm writes must come back token for token. Rules that
name a set or jump to a user chain need them in a kernel table: the
functional tests read those (test_fw_backend_reads.py).
"""

import iptc
import pytest

from vnmlib.firewall import backend_iptc, layout
from vnmlib.nodeport import host as nodeport_host
from vnmlib.nodeport.targets import Ports

DNAT = ("-p", "tcp", "-m", "addrtype", "--dst-type", "LOCAL", "-m", "tcp", "--dport",
        "9001:9100", "-j", "DNAT", "--to-destination", "10.9.0.10:1-100/9001")


@pytest.mark.parametrize("family, tokens", [
    (4, DNAT),
    (4, ("-s", "10.9.0.10/32", "-j", "MASQUERADE")),
    (4, layout.BOOTP),
    (4, layout.CONNTRACK),
    (4, layout.DROP),
    (6, layout.connlimit(20)),
    (4, ("-m", "mac", "!", "--mac-source", "02:00:0a:00:00:01", "-j", "DROP")),
    (6, ("-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", "134", "-j", "RETURN")),
    (4, ("-p", "icmp", "-m", "icmp", "--icmp-type", "3/1", "-j", "RETURN")),
    (4, ("-p", "tcp", "-m", "multiport", "--dports", "22,80:90", "-j", "RETURN")),
    (6, ("-d", "fd00::5/128", "-j", "ACCEPT")),
    (4, ("!", "-s", "10.0.0.0/8", "-i", "br0", "!", "-o", "br1", "-p", "udp", "-j", "ACCEPT")),
])
def test_rules_read_back_as_written(family, tokens):
    rule = backend_iptc._rule(iptc, family, tokens)
    assert backend_iptc._tokens(rule, family) == tokens


def test_nodeport_sees_the_forwarded_host_ports_of_an_iptc_rule():
    """The overlap check of a second NIC's EXTERNAL_PORT_RANGE reads them (it did not:
    the iptc tokens had no ``--dport``, so overlapping ranges went in)."""
    tokens = backend_iptc._tokens(backend_iptc._rule(iptc, 4, DNAT), 4)
    ports = nodeport_host._forwarded(tokens)
    assert (ports.first, ports.last) == (9001, 9100)
    assert ports.overlaps(Ports(9050, 9149)) and not ports.overlaps(Ports(9101, 9200))
