"""``vnm why`` for a NIC on Open vSwitch: ``ovs-appctl ofproto/trace`` decides.

The trace is Open vSwitch's own evaluation of the bridge's flow tables (read
only, nothing is sent), so the verdict is the switch's, not a re-implementation:
``Datapath actions: drop`` is a DROP, an output to the VM's port (to the VM)
or to any port (from the VM) an ACCEPT. From the VM the packet enters at the
NIC's port with the NIC's MAC (the one its anti-spoofing flows name); to the
VM at ``--in-port`` (default: the bridge's LOCAL port) addressed to that MAC.
"""

import re

from vnmlib.errors import VnmError
from vnmlib.host import process
from vnmlib.ops.why import netfilter

_MAC = re.compile(r"dl_src=([0-9a-f]{2}(?::[0-9a-f]{2}){5})")
_PORT = re.compile(r"[A-Za-z0-9_.:-]{1,15}")


class OvsPort:
    def __init__(self, bridge, name, ofport, mac):
        self.bridge, self.name, self.ofport, self.mac = bridge, name, ofport, mac


def find_port(vm_id, nic_id):
    """The :class:`OvsPort` of the NIC, or None (no OVS here, or no port of it)."""
    import os

    from vnmlib.ops.inventory import ovs_port_owner
    from vnmlib.ovs import flows, ovsdb, tools

    if not os.path.exists(ovsdb.socket_path()):
        return None
    state = tools.read_state()
    for bridge, ports in state.bridges.items():
        for port in ports:
            if ovs_port_owner(state, port) != (vm_id, nic_id):
                continue
            # the VM's MAC as the hypervisor noted it, else the lowest its anti-spoofing
            # flows allow (the NIC's and its aliases')
            mac = (state.interfaces.get(port, {}).get("external_ids") or {}).get("attached-mac")
            if not mac:
                dump = tools.ofctl(["dump-flows", bridge,
                                    f"cookie={flows.cookie_of(vm_id, nic_id)}/-1"],
                                   f"reading the flows of {port}")
                mac = min(_MAC.findall(dump), default=None)
            return OvsPort(bridge, port, state.ofport(port), mac)
    return None


def flow_of(port, packet, in_port):
    """The ``ofproto/trace`` flow text of ``packet``."""
    v6 = packet.family == 6
    # the protocol first: OVS checks each field's prerequisites as it reads it
    fields = [{"tcp": "tcp6" if v6 else "tcp", "udp": "udp6" if v6 else "udp",
               "icmp": "icmp", "icmpv6": "icmp6"}.get(packet.protocol, "ipv6" if v6 else "ip"),
              f"in_port={port.name if packet.direction == 'out' else in_port or 'LOCAL'}"]
    if port.mac:
        fields.append(f"{'dl_src' if packet.direction == 'out' else 'dl_dst'}={port.mac}")
    if packet.protocol == "esp":
        fields.append("nw_proto=50")
    fields += [f"{'ipv6_src' if v6 else 'nw_src'}={packet.src}",
               f"{'ipv6_dst' if v6 else 'nw_dst'}={packet.dst}"]
    if packet.sport is not None:  # tp_src would need prerequisites a trace flow lacks
        fields += [f"{packet.protocol}_src={packet.sport}",
                   f"{packet.protocol}_dst={packet.dport}"]
    if packet.icmp_type is not None:
        name = "icmpv6" if v6 else "icmp"
        fields += [f"{name}_type={packet.icmp_type}", f"{name}_code={packet.icmp_code}"]
    return ",".join(fields)


def verdict_of(trace, direction):
    """(verdict, reason, path) from ``ofproto/trace`` output."""
    path, inside = [], False
    for line in trace.splitlines():  # the tables and actions, between the header and the end
        if line.startswith("Final flow:"):
            inside = False
        elif inside and line.strip() and not line.startswith("---"):
            path.append(line.strip())
        elif line.startswith("bridge("):
            inside = True
    actions = [line.split(":", 1)[1].strip() for line in trace.splitlines()
               if line.startswith("Datapath actions:")]
    if not actions:
        return netfilter.Verdict("UNDETERMINED", "ofproto/trace printed no datapath actions",
                                 path)
    action = actions[-1]
    # an output is a bare datapath port number among the actions; anything else
    # (drop, only a userspace or sample action) delivers nothing
    delivered = re.search(r"(?:^|,)[0-9]+(?=,|$)", action)
    where = "from the VM" if direction == "out" else "flooded or forwarded towards the VM"
    if delivered:
        return netfilter.Verdict("ACCEPT", f"datapath actions: {action}: output {where}", path)
    return netfilter.Verdict("DROP", f"datapath actions: {action}", path)


def explain(port, packet, in_port=None, mac=None):
    """The switch's verdict on ``packet``; ``mac``: the source MAC of a packet from the VM
    (default: the NIC's own)."""
    if mac is not None:
        port = OvsPort(port.bridge, port.name, port.ofport, mac)
    if in_port is not None and not _PORT.fullmatch(in_port):
        raise VnmError(f"why: --in-port {in_port!r} is not a port name")
    result = process.run([process.which("ovs-appctl"), "ofproto/trace", port.bridge,
                          flow_of(port, packet, in_port)])
    if not result.ok:
        # the switch's reason (a bad field, say) comes before ovs-appctl's own last line
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        raise VnmError(f"why: ovs-appctl ofproto/trace {port.bridge}: "
                       f"{'; '.join(lines) or result.error_line()}")
    return verdict_of(result.stdout, packet.direction)
