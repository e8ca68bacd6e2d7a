"""The OpenFlow pipeline of a VM port: tables 0 -> 10 -> 20 (reference §2.6).

Table 0 tags the port's packets with the NIC's note and sends them to table 10
(MAC anti-spoofing), then table 20 (IP/ARP anti-spoofing), then ``normal``
switching. Flows are text in ovs-ofctl syntax, in the reference's own words,
so the golden trace C can be compared flow by flow.

Every flow vnm adds also carries a cookie naming its NIC (:func:`cookie`):
``clean`` deletes a NIC's flows with one ``delete cookie=C/-1`` even when the
port (and so its number) is already gone. The note stays for the operators'
tools that look for it, and to find flows the reference drivers made.
"""

import re

from vnmlib.errors import InputError

# Top 16 bits of the cookie: "ON" (OpenNebula), so an admin's own flows with
# cookies never match vnm's deletions.
COOKIE_TAG = 0x4F4E
MAC = r"[0-9a-f]{2}(:[0-9a-f]{2}){5}"  # compiled on first use: pre never needs it

# The addresses a NIC may use, by family; the reference (§2.6) left out a virtual
# router's IPv6 addresses, so its IPv6 traffic was dropped (OpenNebula #5079)
IP4_FIELDS = ("IP", "VROUTER_IP")
IP6_FIELDS = ("IP6", "IP6_GLOBAL", "IP6_LINK", "IP6_ULA", "VROUTER_IP6", "VROUTER_IP6_GLOBAL",
              "VROUTER_IP6_LINK", "VROUTER_IP6_ULA")
BOOTP = "udp,nw_src=0.0.0.0/32,tp_src=68,nw_dst=255.255.255.255/32,tp_dst=67"
PIPELINE = "table=0 note -> table=10 MAC -> table=20 IP -> normal"

# vnm's own flows (issue 27; not in the reference), at priorities the reference
# never uses, above the flows they narrow, so the reference's flows stay as
# they were (and comparable with golden trace C):
TAG_DROP = 110  # table 0, above the note flow: priority tag (VID 0), a tag OVS did not parse
OWN_L2 = 50002  # table 10: ARP / NS / NA carrying the NIC's own MAC inside too ...
OTHER_L2 = 50001  # ... any other (above the reference's ARP flow, 50000)
OWN_NA = 46001  # table 20: an NA for the NIC's own address, from its own address ...
OTHER_NA = 46000  # ... any other NA (above the reference's ipv6_src flows, 45000)
NO_LLADDR = "00:00:00:00:00:00"  # how OVS shows an ND message without the option


def _ids(nic):
    vm_id, nic_id = nic.vm_id, nic.nic_id
    if not 0 <= vm_id < 2 ** 32 or not 0 <= nic_id < 2 ** 16:
        raise InputError(f"{nic.label}: VM ID {vm_id} / NIC_ID {nic_id} do not fit an OVS note "
                         "(32 and 16 bits)")
    return vm_id, nic_id


def note(nic):
    """``%08x%04x`` of VM and NIC ids, dots between bytes: VM 9 NIC 1 -> 00.00.00.09.00.01."""
    digits = "%08x%04x" % _ids(nic)
    return ".".join(digits[i:i + 2] for i in range(0, len(digits), 2))


def cookie(nic):
    return cookie_of(*_ids(nic))


def cookie_of(vm_id, nic_id):
    """``0x4f4e<vm:32><nic:16>``; :func:`ids_of` reads one back."""
    return (COOKIE_TAG << 48) | (vm_id << 16) | nic_id


def ids_of(value):
    """(vm_id, nic_id) of one of vnm's cookies, None for any other cookie."""
    if value >> 48 != COOKIE_TAG:
        return None
    return (value >> 16) & 0xFFFFFFFF, value & 0xFFFF


def _yes(element, attribute):
    return element.get(attribute).upper() == "YES"


def filters_ip(element):
    """``FILTER_IP_SPOOFING``: the element's table 20 lets the DHCP client's requests out."""
    return _yes(element, "FILTER_IP_SPOOFING")


def _mac(element):
    mac = element.get("MAC").lower()
    if not re.fullmatch(MAC, mac):
        raise InputError(f"{element.label}: MAC {element.get('MAC')!r} is not a MAC address "
                         "(FILTER_MAC_SPOOFING needs it)")
    return mac


def _addresses(element, fields, version):
    found = (element.ip_address(field, version) for field in fields)
    return [str(address) for address in found if address is not None]


def spoofing_flows(port, element, arp_cache_poisoning, accept="normal"):
    """The anti-spoofing flows of a NIC or NIC_ALIAS on ``port`` (``FILTER_*_SPOOFING``);
    ``accept``: what table 20 does with a frame it lets through."""
    flows = []
    at = f"in_port={port}"
    if _yes(element, "FILTER_MAC_SPOOFING"):
        mac = _mac(element)
        if arp_cache_poisoning:
            flows.append(f"table=10,{at},arp,dl_src={mac},priority=50000,actions=resubmit(,20)")
        flows.append(f"table=10,{at},dl_src={mac},priority=45000,actions=resubmit(,20)")
        flows.append(f"table=10,{at},priority=40000,actions=drop")
        flows += _link_layer_flows(at, mac, arp_cache_poisoning)
    if _yes(element, "FILTER_IP_SPOOFING"):
        for ip in _addresses(element, IP4_FIELDS, 4):
            if arp_cache_poisoning:
                flows.append(f"table=20,{at},arp,nw_src={ip},priority=50000,actions={accept}")
            flows.append(f"table=20,{at},ip,nw_src={ip},priority=45000,actions={accept}")
        if arp_cache_poisoning:
            # any other ARP, e.g. a gratuitous ARP claiming another VM's address
            flows.append(f"table=20,{at},arp,priority=49000,actions=drop")
        flows.append(f"table=20,{at},{BOOTP},priority=44000,actions={accept}")  # DHCP client
        for ip6 in _addresses(element, IP6_FIELDS, 6):
            flows.append(f"table=20,{at},ipv6,ipv6_src={ip6},priority=45000,actions={accept}")
        for nd_type in (133, 135):  # router / neighbour solicitation during address set-up
            flows.append(f"table=20,{at},icmp6,icmp_type={nd_type},ipv6_src=::,"
                         f"priority=44000,actions={accept}")
        flows.append(f"table=20,{at},ip,priority=40000,actions=drop")
        flows.append(f"table=20,{at},ipv6,priority=40000,actions=drop")
        flows += _advert_flows(at, _addresses(element, IP6_FIELDS, 6), accept)
    return flows


def _link_layer_flows(at, mac, arp_cache_poisoning):
    """ARP, NS and NA only with the NIC's MAC inside as well as in the Ethernet source.

    The reference checked ``dl_src`` alone, so an ARP or ND message from the
    VM's own MAC could still name another MAC as sender or link-layer address
    and poison its neighbours' caches.
    """
    flows = []
    if arp_cache_poisoning:  # the reference's switch for ARP flows
        flows.append(f"table=10,{at},arp,dl_src={mac},arp_sha={mac},priority={OWN_L2},"
                     "actions=resubmit(,20)")
        flows.append(f"table=10,{at},arp,priority={OTHER_L2},actions=drop")
    for icmp_type, option in ((135, "nd_sll"), (136, "nd_tll")):
        for lladdr in (mac, NO_LLADDR):
            flows.append(f"table=10,{at},icmp6,icmp_type={icmp_type},icmp_code=0,dl_src={mac},"
                         f"{option}={lladdr},priority={OWN_L2},actions=resubmit(,20)")
        flows.append(f"table=10,{at},icmp6,icmp_type={icmp_type},priority={OTHER_L2},"
                     "actions=drop")
    return flows


def _advert_flows(at, own6, accept):
    """A neighbour advertisement may claim only the NIC's own addresses (``nd_target``)."""
    flows = [f"table=20,{at},icmp6,icmp_type=136,icmp_code=0,ipv6_src={source},"
             f"nd_target={target},priority={OWN_NA},actions={accept}"
             for target in own6 for source in own6]
    flows.append(f"table=20,{at},icmp6,icmp_type=136,priority={OTHER_NA},actions=drop")
    return flows


def tag_flows(port):
    """Frames no filter may see: a priority tag (VID 0), or a tag below the one OVS parsed.

    OVS reads VID 0 as untagged and, with ``vlan-limit`` 1, stops after one
    tag: a second 802.1Q or an 802.1ad tag leaves ``dl_type`` at 0x8100 /
    0x88a8, which no ``ip``/``ipv6``/``arp`` flow matches, so it went to
    ``normal`` past every check, into the port's VLAN with a tag of its choice.
    """
    at = f"table=0,in_port={port}"
    return [f"{at},vlan_tci=0x1000/0x1fff,priority={TAG_DROP},actions=drop",
            f"{at},dl_type=0x8100,priority={TAG_DROP},actions=drop",
            f"{at},dl_type=0x88a8,priority={TAG_DROP},actions=drop"]


def port_flows(port, nic, aliases, arp_cache_poisoning, accept="normal"):
    """Every flow of ``nic``'s port: the pipeline, its and its aliases' anti-spoofing;
    ``accept``: where table 20 sends what it lets through (security groups' tables).

    The reference added the aliases' flows one ``add-flow`` at a time after the
    NIC's, and equal flows replaced each other; the union below is that end state.
    """
    at = f"in_port={port}"
    flows = [f"table=0,{at},priority=100,actions=note:{note(nic)},resubmit(,10)",
             f"table=10,{at},priority=100,actions=resubmit(,20)",
             f"table=20,{at},priority=100,actions={accept}"]
    filtered = False
    for element in [nic] + list(aliases):
        flows += spoofing_flows(port, element, arp_cache_poisoning, accept)
        filtered |= _yes(element, "FILTER_MAC_SPOOFING") or _yes(element, "FILTER_IP_SPOOFING")
    if filtered:
        flows += tag_flows(port)
    return list(dict.fromkeys(flows))


def replace_lines(port, nic, flows):
    """ovs-ofctl ``add-flows`` lines replacing whatever ``port`` and ``nic`` had.

    ``in_port`` clears what the port's previous owner left (the reference's
    ``del-flows in_port=N``); the cookie clears this NIC's flows from a port
    number it had before (a restarted VM gets a new one).
    """
    mark = f"cookie={cookie(nic):#x}"
    return ([f"delete in_port={port}", f"delete {mark}/-1"]
            + [f"add {mark},{flow}" for flow in flows])


def delete_lines(nic, legacy_ports=()):
    """Lines deleting ``nic``'s flows: by cookie, and on ports the reference's flows used."""
    return ([f"delete cookie={cookie(nic):#x}/-1"]
            + [f"delete in_port={port}" for port in legacy_ports])
