"""The flow bundles of VM ports: a NIC's flows replaced (``post``) or deleted (``clean``).

What the flows are (the anti-spoofing pipeline, cookies, notes) is
:mod:`vnmlib.ovs.flows`'; this module plans the
:class:`~vnmlib.ovs.tools.FlowBundle` steps writing them, one per bridge, so a
VM is never seen with half of its flows.
"""

from vnmlib.model.config import is_true, nic_conf
from vnmlib.ovs import flows as ovs_flows, sg_flows, tools as ovs
from vnmlib.ovs.port_ownership import require_port


def plan_flows(state, vm, driver, needs, conf, leaving_alias=None):
    """One bundle per bridge replacing the flows of ``needs``' ports (their aliases'
    addresses too, but ``leaving_alias``'s, which is being detached), security
    groups' flows included for NICs that enforce them (:mod:`vnmlib.ovs.sg_flows`)."""
    by_bridge = {}
    groups = None  # the VM's rules, parsed once if a NIC enforces them
    for need in needs:
        nic = need.nic
        tap, port = require_port(state, vm, need)
        protected = sg_flows.enabled(conf, nic)
        if protected:
            groups = sg_flows.vm_groups(vm) if groups is None else groups
        flows = nic_port_flows(port, nic, vm, driver, conf, groups if protected else None,
                               leaving_alias)
        lines, shown = by_bridge.setdefault(nic.bridge, ([], []))
        lines += ovs_flows.replace_lines(port, nic, flows)
        shown.append(f"{tap} (port {port}, {len(flows)} flows"
                     f"{', security groups' if protected else ''})")
    pipeline = ovs_flows.PIPELINE + (f"; security groups: {sg_flows.PIPELINE}"
                                     if groups is not None else "")
    return [ovs.FlowBundle(bridge, lines, f"flows of {', '.join(shown)} on {bridge}: {pipeline}")
            for bridge, (lines, shown) in by_bridge.items()]


def nic_port_flows(port, nic, vm, driver, conf, groups, leaving_alias=None):
    """Every flow of ``nic`` on OpenFlow ``port``: anti-spoofing, and with ``groups`` (the
    VM's parsed rules; None: the NIC does not enforce them) its security groups'."""
    arp = is_true(nic_conf(conf, nic).get("arp_cache_poisoning"))
    aliases = vm.aliases_of(nic, leaving=leaving_alias, driver=driver)
    if groups is None:
        return ovs_flows.port_flows(port, nic, aliases, arp)
    flows = ovs_flows.port_flows(port, nic, aliases, arp, accept=sg_flows.ENTER)
    bootp = any(ovs_flows.filters_ip(element) for element in [nic] + list(aliases))
    return flows + sg_flows.protected_flows(port, nic, groups, bootp)


def plan_flow_removal(view, vm, bridge, nics, owned):
    """The bundle deleting the flows of ``nics`` on ``bridge``: by cookie, and the
    reference's by the port their note names (:func:`_legacy_ports`)."""
    taps = [vm.tap_name(nic) for nic in nics]
    lines = [line for nic in nics for line in ovs_flows.delete_lines(nic)]
    lines += [f"delete in_port={p}" for p in _legacy_ports(view, bridge, nics, taps, owned)]
    return ovs.FlowBundle(bridge, lines, f"delete flows of {', '.join(taps)} on {bridge}")


def _legacy_ports(view, bridge, nics, taps, owned):
    """Ports of flows the reference made for ``nics`` (found by note, no cookie).

    A port number now used by another interface is not ours any more: its
    flows belong to that interface's NIC; nor is a live port not provably the
    NIC's (``owned``): ``delete in_port`` would take its owner's flows too.
    """
    notes = {ovs_flows.note(nic): tap for nic, tap in zip(nics, taps)}
    live = {entry["ofport"]: name for name, entry in view.state.interfaces.items()}
    found = []
    for flow_cookie, port, flow_note in view.noted_ports(bridge):
        tap = next((t for n, t in notes.items() if flow_note.startswith(n)), None)
        if tap is None or flow_cookie >> 48 == ovs_flows.COOKIE_TAG:
            continue
        if live.get(port, tap) == tap and (port not in live or tap in owned):
            found.append(port)
    return sorted(set(found))
