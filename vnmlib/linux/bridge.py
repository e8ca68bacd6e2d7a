"""Linux bridges for VM NICs: create, attach uplinks, trunk VLANs, release.

Shared by every Linux-bridge driver (bridge, fw, 802.1Q, vxlan, elastic). The
planners here read the host only through a view (:mod:`vnmlib.host.view`: the
live links, or a made-up host in unit tests) and return
:mod:`vnmlib.host.steps`; the actions run them through
:func:`vnmlib.host.change.change_links`, which builds the view under the
:class:`~vnmlib.host.locks.LinkLocks` of every link they name, so what was read
stays true until the steps are applied.
"""

from vnmlib.errors import VnmError
from vnmlib.host import port_owner, steps
from vnmlib.host.change import change_links
from vnmlib.host.locks import BridgeUsers, nic_user
from vnmlib.linux import tproxy
from vnmlib.model.bridge_options import bridge_options, sysfs_name
from vnmlib.model.naming import vlan_device_name
from vnmlib.model.nic_need import NicNeed


class BridgeNeed(NicNeed):
    """What one NIC needs from the host: its Linux bridge (with options) and uplink.

    Drivers whose uplink is not PHYDEV itself (802.1Q, vxlan: the
    ``<PHYDEV>.<VLAN_ID>`` device) subclass it and override the uplink parts.
    """

    def __init__(self, nic, conf):
        super().__init__(nic, conf)
        self.options = bridge_options(self.conf, nic)

    def plan_uplink(self, view):
        """Steps that connect the bridge to the network: PHYDEV as a port."""
        if not self.phydev:
            return []
        return plan_uplink(view, self.phydev, self.bridge, self.nic.label)

    def non_guests(self):
        """Ports that do not make the bridge "in use" (reference §2.0 guests rule)."""
        names = {f"{self.bridge}b"}  # the TProxy veth
        if self.phydev:
            names.add(self.phydev)
            vlan_id = self.nic.vlan_id
            if vlan_id is not None:
                names.add(vlan_device_name(self.phydev, vlan_id))
        return names


def plan_bridge(view, need):
    """Steps to make ``need.bridge`` exist, be up and carry ``need.options``."""
    name = need.bridge
    if name in view.planned_bridges:
        return []
    if not view.exists(name):
        view.planned_bridges.add(name)
        return [steps.CreateBridge(name, need.options, need.nic.label),
                steps.Ipv6Quiet(name, need.nic.label), steps.LinkUp(name)]
    if not view.is_bridge(name):
        kind = view.link_kind(name) or "non-bridge"
        raise VnmError(f"{need.nic.label}: BRIDGE {name} exists but is a {kind} device, not a bridge")
    for option, wanted in need.options.items():
        have = view.bridge_option(name, sysfs_name(option))
        if have != wanted:
            raise VnmError(f"{need.nic.label}: bridge {name} exists with {option}={have}, "
                           f"but the configuration asks for {option}={wanted}")
    return [] if view.is_up(name) else [steps.LinkUp(name)]


def plan_uplink(view, port, bridge, label):
    """Steps to make ``port`` (PHYDEV) a port of ``bridge``."""
    if not view.exists(port):
        raise VnmError(f"{label}: PHYDEV {port} does not exist on this host")
    return plan_enslave(view, port, bridge, label, "PHYDEV ")


def plan_enslave(view, port, bridge, label, what=""):
    """Steps to make ``port`` a port of ``bridge``; never steal it from another bridge."""
    current = view.master(port)
    if current == bridge:
        return []
    if current is not None:
        raise VnmError(f"{label}: {what}{port} is already a port of {current}, not of {bridge}")
    view.planned_masters[port] = bridge
    return [steps.SetMaster(port, bridge)]


def plan_attach(view, needs):
    """All steps for ``pre``: bridges first, then uplinks, in NIC order."""
    planned = []
    for need in needs:
        planned += plan_bridge(view, need)
        planned += need.plan_uplink(view)
    return planned


def plan_release(view, bridge, needs, users_left):
    """Steps for ``clean``: delete the bridge and its own devices when nobody uses it."""
    if any(need.keep_empty for need in needs) or not view.is_bridge(bridge):
        return []
    non_guests = set().union(*(need.non_guests() for need in needs))
    ports = set(view.bridge_ports(bridge))
    if users_left or ports - non_guests:
        return []
    # only devices still in this bridge: a same-named device elsewhere is not ours
    owned = dict.fromkeys(d for need in needs for d in need.owned_devices() if d in ports)
    return [steps.DeleteLink(d) for d in owned] + [steps.DeleteLink(bridge)]


def attach(ctx, nics, need_type=BridgeNeed):
    """``pre`` for ``nics``: bridge + uplink per NIC, recorded as users of the bridge,
    then each bridge's TProxy when ``:tproxy:`` wants one (the reference's
    ``TProxy.setup_tproxy(:up)`` at the end of ``activate``)."""
    # every NIC is validated before any change: bridge options and :tproxy: here,
    # device specs while planning
    needs = [need_type(nic, ctx.conf) for nic in nics]
    if not needs:
        return
    proxies = tproxy.wanted(ctx, nics, need_type)
    records = [(need.bridge, nic_user(need.nic.vm_id, need.nic.nic_id)) for need in needs]
    change_links(ctx.log, [name for need in needs for name in need.link_names()],
                 lambda view: plan_attach(view, needs), users=records)
    tproxy.attach(ctx, proxies, lambda: _release_links(ctx, needs))


def release(ctx, nics, need_type=BridgeNeed):
    """``clean`` for ``nics``: forget them as users, delete bridges left unused, then
    their TProxy when no guest is left (also when keep_empty_bridge keeps the bridge)."""
    _release_links(ctx, [need_type(nic, ctx.conf) for nic in nics])
    tproxy.release(ctx, nics, need_type)


def _release_links(ctx, needs):
    by_bridge = {}
    for need in needs:
        by_bridge.setdefault(need.bridge, []).append(need)
    if not by_bridge:
        return
    # the uplinks too: deleting a bridge releases them, which a concurrent
    # pre of another bridge wanting the same uplink must not see half-way
    names = [name for need in needs for name in need.link_names()]

    def plan(view):
        # the records go under the lock, right before the decision they feed
        users = BridgeUsers()
        planned = []
        for bridge, bridge_needs in by_bridge.items():
            for need in bridge_needs:
                users.remove(bridge, nic_user(need.nic.vm_id, need.nic.nic_id))
            planned += plan_release(view, bridge, bridge_needs, users.users(bridge))
        return planned

    change_links(ctx.log, names, plan)


def plan_trunk(view, bridge, ports, vids, remove=()):
    """VLAN trunking on a bridge: filtering on, ``vids`` allowed on each port."""
    if not view.is_bridge(bridge):
        raise VnmError(f"bridge {bridge} does not exist on this host")
    planned = []
    for port in ports:
        if remove:
            planned.append(steps.VlanDel(port, remove))
    if vids:
        if not view.bridge_option(bridge, "vlan_filtering"):
            planned.append(steps.SetBridgeOptions(bridge, {"vlan_filtering": 1},
                                                  feature="bridge VLAN filtering"))
        planned += [steps.VlanAdd(port, vids) for port in ports]
    return planned


def require_tap(view, vm, nic, bridge, uplinks=()):
    """The NIC's tap, which ``post`` expects the hypervisor to have put on ``bridge``;
    never a port that is provably not the NIC's (TARGET is the user's: issue 23.4)."""
    tap = vm.tap_name(nic)
    if not view.exists(tap):
        raise VnmError(f"{nic.label}: tap {tap} does not exist; post runs after the "
                       "hypervisor has created it")
    if view.master(tap) != bridge:
        raise VnmError(f"{nic.label}: tap {tap} is not a port of bridge {bridge}")
    port_owner.refuse_foreign_tap(vm, nic, tap, uplinks)
    return tap
