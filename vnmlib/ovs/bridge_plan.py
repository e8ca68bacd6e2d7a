"""Planners of Open vSwitch bridges and uplinks: made (``pre``), deleted (``clean``), swapped
(``update_nic``).

A network is an OVS bridge (``BRIDGE``, with the columns of
:func:`vnmlib.ovs.need.bridge_options`) whose uplink port is the need's
``uplink``. Everything ``pre`` or ``clean`` does to bridges and ports is one
ovs-vsctl transaction; a bridge goes when only its uplink is left and no
other NIC uses it (SPEC decision 4). Planners read an
:class:`~vnmlib.ovs.view.OvsView`, never the host itself.
"""

from vnmlib.errors import VnmError
from vnmlib.host import steps
from vnmlib.ovs import tools as ovs
from vnmlib.ovs.flow_plan import plan_flow_removal
from vnmlib.ovs.need import OvsVxlanNeed


def wanted_options(needs):
    """[(bridge, what, column, value)] for :func:`vnmlib.ovs.tools.read_state` to check."""
    return [(need.bridge, f"{need.nic.label}: OVS_BRIDGE_CONF/ovs_bridge_conf", column, value)
            for need in needs for column, value in need.options.items()]


def _shown_options(options):
    return "".join(f" {k}={v}" for k, v in options.items())


def _check_bridge(state, need):
    """An existing bridge is reused only with the columns this network asks for (SPEC decision 1)."""
    for column, value in need.options.items():
        have = state.differences.get((need.bridge, column))
        if have is not None:
            raise VnmError(f"{need.nic.label}: Open vSwitch bridge {need.bridge} exists with "
                           f"{column}={have}, but the configuration asks for {column}={value}")


def _check_uplink(view, need, planned_ports):
    """Whether the uplink must be added to the bridge (False: it is there already)."""
    uplink, bridge, label = need.uplink, need.bridge, need.nic.label
    current = planned_ports.get(uplink) or view.state.bridge_of(uplink)
    if current == bridge:
        return False
    what = "PHYDEV" if uplink == need.phydev else "VXLAN device"
    if current is not None:
        raise VnmError(f"{label}: {what} {uplink} is already a port of Open vSwitch bridge "
                       f"{current}, not of {bridge}")
    master = view.master(uplink) if view.exists(uplink) else None
    if master is not None and master != "ovs-system":  # ovs-system: the kernel datapath
        raise VnmError(f"{label}: {what} {uplink} is already a port of {master}")
    if uplink == need.phydev and not view.exists(uplink):
        raise VnmError(f"{label}: PHYDEV {uplink} does not exist on this host")
    planned_ports[uplink] = bridge
    return True


def plan_attach(view, needs):
    """Steps for ``pre``: uplink devices, then one transaction (bridges, columns, uplink ports)."""
    state = view.state
    devices, commands, undo, shown, up = [], [], [], [], []
    new_bridges, planned_ports = set(), {}
    for need in needs:
        bridge = need.bridge
        if bridge not in state.bridges and bridge not in new_bridges:
            if view.exists(bridge):
                kind = view.link_kind(bridge) or "plain"
                raise VnmError(f"{need.nic.label}: BRIDGE {bridge} exists but is a {kind} "
                               "device, not an Open vSwitch bridge")
            new_bridges.add(bridge)
            commands.append(["--may-exist", "add-br", bridge])
            if need.options:
                commands.append(["set", "Bridge", bridge,
                                 *(f"{k}={v}" for k, v in need.options.items())])
            undo.append(["--if-exists", "del-br", bridge])
            shown.append(f"add bridge {bridge}{_shown_options(need.options)}")
            up.append(bridge)
        elif bridge in state.bridges:
            _check_bridge(state, need)
            if view.exists(bridge) and not view.is_up(bridge) and bridge not in up:
                up.append(bridge)
        if need.uplink:
            devices += need.plan_device(view)
            if _check_uplink(view, need, planned_ports):
                commands.append(["--may-exist", "add-port", bridge, need.uplink])
                if bridge not in new_bridges:  # del-br takes a new bridge's ports with it
                    undo.insert(0, ["--if-exists", "del-port", bridge, need.uplink])
                shown.append(f"add port {need.uplink} to {bridge}")
    planned = list(devices)
    if commands:
        planned.append(ovs.Transaction(commands, "; ".join(shown), undo))
    # a new bridge's own interface takes no RA, SLAAC or link-local from what VMs send
    # (as the Linux bridges vnm makes), then goes up as the reference's (`ip link set <BR> up`)
    planned += [steps.Ipv6Quiet(bridge) for bridge in sorted(new_bridges)]
    return planned + [steps.LinkUp(bridge) for bridge in up]


def plan_release(view, vm, needs, users, owned):
    """Flows and ports of ``needs``' NICs; bridges left with only their uplink go, devices too.

    Only the ports in ``owned`` (:func:`vnmlib.ovs.port_ownership.owned_taps`)
    are deleted; the NICs' flows always are, by their cookie. A bridge that
    goes takes its flows with it: only the flows of a bridge that stays are
    deleted (by cookie, and the reference's by note).
    """
    state = view.state
    planned, commands, shown, deleted_links = [], [], [], []
    by_bridge = {}
    for need in needs:
        by_bridge.setdefault(need.bridge, []).append(need)
    for bridge, bridge_needs in by_bridge.items():
        if bridge not in state.bridges:
            continue
        nics = [need.nic for need in bridge_needs]
        ports = set(state.bridges[bridge]) - {bridge}  # a bridge's own internal port
        for tap in (vm.tap_name(nic) for nic in nics):
            if tap in ports and tap in owned:
                commands.append(["--if-exists", "del-port", bridge, tap])
                shown.append(f"delete port {tap} from {bridge}")
                ports.discard(tap)
        if _bridge_unused(bridge_needs, ports, users.users(bridge)):
            commands.append(["--if-exists", "del-br", bridge])
            shown.append(f"delete bridge {bridge}")
            deleted_links += [d for need in bridge_needs for d in need.owned_devices()
                              if d in ports]
            continue
        planned.append(plan_flow_removal(view, vm, bridge, nics, owned))
    if commands:
        planned.append(ovs.Transaction(commands, "; ".join(shown)))
    return planned + [steps.DeleteLink(name) for name in dict.fromkeys(deleted_links)]


def _bridge_unused(needs, ports, users_left):
    """The reference's rule: with PHYDEV, not kept, nothing but the uplink left; plus no user."""
    if users_left or any(need.keep_empty or not need.phydev for need in needs):
        return False
    return ports <= {need.uplink for need in needs}


def plan_uplink_swap(view, needs, olds):
    """``update_nic`` of PHYDEV / OUTER_VLAN_ID: the old uplinks (``olds``) leave their
    bridges (an old VXLAN device is deleted), then the new ones are planned as ``pre`` would."""
    state = view.state
    planned, commands, shown, deleted = [], [], [], []
    for need, old in zip(needs, olds):
        if old and old != need.uplink and state.bridge_of(old) == need.bridge:
            commands.append(["--if-exists", "del-port", need.bridge, old])
            shown.append(f"delete port {old} from {need.bridge}")
            if old not in deleted and isinstance(need, OvsVxlanNeed):
                deleted.append(old)
    if commands:
        planned.append(ovs.Transaction(commands, "; ".join(shown)))
        # state now lacks those ports: plan the new uplinks as pre would
        for name in (old for old in olds if old):
            entry = state.ports.pop(name, None)
            if entry:
                state.bridges[entry["bridge"]].discard(name)
    planned += [steps.DeleteLink(name) for name in deleted]
    return planned + plan_attach(view, needs)
