"""VLAN-backed Linux bridges: the mechanism the 802.1Q and vxlan drivers share.

A network of these drivers is a bridge (``BRIDGE``) whose uplink is the device
``<PHYDEV>.<VLAN_ID>``: an 802.1Q VLAN device or a VXLAN device, described by
:mod:`vnmlib.linux.vlan_link`. NICs without PHYDEV are skipped (reference §2.4).
The bridge part (creation, options, users, the guests rule) is
:mod:`vnmlib.linux.bridge`'s; this module adds the device: create it or check
the existing one is the right one, enslave it, delete it with its bridge,
re-create it or change its MTU on ``update_nic``, and the 802.1Q bridge VLAN
filters (QinQ ``CVLANS``, ``VLAN_TAGGED_ID`` trunks).

The planners read the host through a view (:mod:`vnmlib.host.view`), a device's
VLAN ID or VNI, lower device and MTU included.
"""

from vnmlib.errors import InputError, VnmError
from vnmlib.host import port_owner, steps
from vnmlib.host.change import change_links
from vnmlib.host.netlink import VLAN_INFO_PVID, VLAN_INFO_UNTAGGED
from vnmlib.linux import bridge as linux_bridge, vlan_link
from vnmlib.model.config import is_true
from vnmlib.model.naming import checked_vlan_device_name, old_vlan_ranges, parse_vlan_ranges


class VlanBridgeNeed(linux_bridge.BridgeNeed):
    """A NIC's bridge plus its ``<PHYDEV>.<VLAN_ID>`` device.

    Each kind of device is a subclass (:class:`VlanNeed`, :class:`VxlanNeed`)
    that builds its :class:`~vnmlib.linux.vlan_link.DeviceSpec` in
    :meth:`build_spec`; it runs on first use of :attr:`spec`, so ``clean``
    never fails on a setting it does not need.
    """

    def __init__(self, nic, conf):
        super().__init__(nic, conf)
        self._spec = None

    @property
    def spec(self):
        if self._spec is None:
            self._spec = self.build_spec()
        return self._spec

    @property
    def device(self):
        vlan_id = self.nic.vlan_id
        if vlan_id is None:
            raise InputError(f"{self.nic.label}: VLAN_ID is missing")
        return checked_vlan_device_name(self.phydev, vlan_id,
                                        f"{self.nic.label}: VLAN device name")

    def link_names(self):
        return [self.bridge, self.phydev, self.device]

    def plan_uplink(self, view):
        return plan_device(view, self)

    def owned_devices(self):
        return [self.device]


class VlanNeed(VlanBridgeNeed):
    """802.1Q: the uplink is the VLAN device ``<PHYDEV>.<VLAN_ID>``."""

    def build_spec(self):
        return vlan_link.vlan_spec(self.nic, self.conf)


class VxlanNeed(VlanBridgeNeed):
    """vxlan: the uplink is the VXLAN device ``<PHYDEV>.<VLAN_ID>`` (VNI = VLAN_ID)."""

    def build_spec(self):
        return vlan_link.vxlan_spec(self.nic, self.conf, vlan_link.phydev_addresses(self.nic))


def plan_device(view, need):
    """Steps to make ``need.spec`` exist, be up and be a port of ``need.bridge``."""
    planned = vlan_link.plan_device_link(view, need.spec)
    planned += linux_bridge.plan_enslave(view, need.spec.name, need.bridge, need.nic.label)
    if is_true(need.conf.get("validate_vlan_id")):
        _validate_vlan_id(view, need)
    return planned


def _validate_vlan_id(view, need):
    """``validate_vlan_id``: no other VLAN/VNI may already be in the bridge (reference §2.4)."""
    spec = need.spec
    for port in view.bridge_ports(need.bridge):
        if port == spec.name or view.link_kind(port) not in ("vlan", "vxlan"):
            continue
        link = view.link(port)
        if link is not None and (link.kind, link.data.get("id")) != (spec.kind, spec.vlan_id):
            raise VnmError(f"{need.nic.label}: bridge {need.bridge} already has {port} "
                           f"({link.kind} id {link.data.get('id')}), not {spec.kind} id "
                           f"{spec.vlan_id} (validate_vlan_id)")


def network_nics(nics):
    """The NICs these drivers act on: those with a PHYDEV (reference §2.4)."""
    return [nic for nic in nics if nic.phydev]


def attach(ctx, need_type):
    """``pre``: every NIC of the driver (hot-plug or not) gets its bridge and device."""
    linux_bridge.attach(ctx, network_nics(ctx.vm.driver_nics(ctx.driver)), need_type)


def release(ctx, need_type):
    """``clean``: bridge and device go together when no guest is left."""
    plugged = ctx.vm.hotplugged()
    if plugged is not None and plugged.kind != "NIC":
        return  # alias or PCI hot-plug: no bridge-level work (reference special_hotplug?)
    linux_bridge.release(ctx, network_nics(ctx.vm.scoped_nics(ctx.driver)), need_type)


# -- bridge VLAN filters (802.1Q) ----------------------------------------------

def vlan_filters(nic):
    """(S-VLAN or None, other VIDs) a NIC's tap and device carry.

    ``CVLANS`` makes the network QinQ (reference §2.4): the S-VLAN (VLAN_ID) is
    the ports' PVID, untagged, and the C-VLANs pass tagged, so the VLAN device
    adds the outer tag. ``VLAN_TAGGED_ID`` trunks VIDs the same way without a PVID.
    """
    cvlans = nic.get("CVLANS")
    vids = parse_vlan_ranges(cvlans, f"{nic.label}: CVLANS") if cvlans else []
    vids += [v for v in nic.tagged_vlans() if v not in vids]
    s_vlan = nic.vlan_id if cvlans else None
    return s_vlan, vids


def plan_filters(view, bridge, ports, s_vlan, vids, enabling):
    """Filters for ``ports`` = [(port, VIDs to remove first)] of ``bridge``.

    ``enabling`` collects the bridges this action already turns filtering on for.
    """
    planned = [steps.VlanDel(port, remove) for port, remove in ports if remove]
    for port, _ in ports:
        if s_vlan is not None:
            planned.append(steps.VlanAdd(port, [s_vlan], VLAN_INFO_PVID | VLAN_INFO_UNTAGGED))
        if vids:
            planned.append(steps.VlanAdd(port, vids))
    wants = s_vlan is not None or vids
    if wants and bridge not in enabling and not view.bridge_option(bridge, "vlan_filtering"):
        enabling.add(bridge)
        # after the VIDs: the ports carry their VLANs from the moment filtering starts
        planned.append(steps.SetBridgeOptions(bridge, {"vlan_filtering": 1},
                                              feature="bridge VLAN filtering"))
    return planned


def post_filters(ctx, need_type):
    """``post`` of 802.1Q: QinQ / trunk filters on the tap and the VLAN device."""
    vm = ctx.vm
    wanted = []
    for nic in network_nics(vm.scoped_nics(ctx.driver)):
        s_vlan, vids = vlan_filters(nic)
        if s_vlan is not None or vids:
            wanted.append((need_type(nic, ctx.conf), s_vlan, vids))
    if not wanted:
        return
    change_links(ctx.log, [name for need, _, _ in wanted for name in need.link_names()],
                 lambda view: plan_post_filters(view, vm, wanted))


def plan_post_filters(view, vm, wanted):
    """Filters for ``wanted`` = [(need, S-VLAN, VIDs)] on each NIC's tap and device."""
    planned, enabling = [], set()
    for need, s_vlan, vids in wanted:
        tap = linux_bridge.require_tap(view, vm, need.nic, need.bridge, [need.device])
        if view.master(need.device) != need.bridge:
            raise VnmError(f"{need.nic.label}: {need.device} is not a port of {need.bridge}; "
                           "pre must run before post")
        ports = [(tap, ()), (need.device, ())]
        planned += plan_filters(view, need.bridge, ports, s_vlan, vids, enabling)
    return planned


# -- update_nic ------------------------------------------------------------------

def update(ctx, need_type, filters=False):
    """``update_nic``: ``VNET_UPDATE`` holds the old values (reference §2.4, §2.5).

    VLAN_ID or PHYDEV changed: the old device leaves (deleted), the new one is
    made and enslaved. Only MTU changed: set in place. With ``filters`` (802.1Q),
    a change of VLAN_ID, CVLANS or VLAN_TAGGED_ID re-does the VLAN filters.
    """
    vm = ctx.vm
    vnet_id = ctx.int_arg(1, "vnet_id")
    changed = vm.vnet_update
    nics = [n for n in network_nics(vm.driver_nics(ctx.driver)) if n.network_id == vnet_id]
    recreate = bool({"VLAN_ID", "PHYDEV"} & set(changed))
    # a re-created device has no filters yet, so PHYDEV alone re-does them too
    refilter = filters and (recreate or bool({"CVLANS", "VLAN_TAGGED_ID"} & set(changed)))
    if not nics or not (recreate or refilter or "MTU" in changed):
        return
    needs = [need_type(nic, ctx.conf) for nic in nics]
    for need in needs:
        need.spec  # validate the new values before anything changes
    olds = [_old_device(need.nic, changed) for need in needs]
    names = [n for need in needs for n in need.link_names()] + [o for o in olds if o]

    def plan(view):
        planned, enabling = [], set()
        for need, old in zip(needs, olds):
            planned += _plan_update(view, need, old, recreate)
            if refilter:
                planned += _plan_refilter(view, vm, need, changed, recreate, enabling, ctx.log)
        return planned

    change_links(ctx.log, names, plan)


def _old_device(nic, changed):
    """The device the network had before the update, when its name changed."""
    if not {"VLAN_ID", "PHYDEV"} & set(changed):
        return None
    old_phydev = changed.get("PHYDEV", nic.phydev)
    old_vlan = changed.get("VLAN_ID", nic.get("VLAN_ID"))
    if not old_phydev or not old_vlan:
        return None
    return checked_vlan_device_name(old_phydev, old_vlan, f"{nic.label}: old VLAN device")


def _plan_update(view, need, old, recreate):
    spec = need.spec
    planned = []
    if recreate and old and old != spec.name and spec.name not in view.planned_devices:
        if view.master(old) == need.bridge:
            planned.append(steps.DeleteLink(old))
            view.planned_masters[old] = None
    if recreate:
        return planned + plan_device(view, need)
    link = view.link(spec.name)
    if link is not None and link.mtu != spec.mtu:
        planned.append(steps.SetMtu(spec.name, spec.mtu, need.nic.label))
    return planned


def _plan_refilter(view, vm, need, changed, recreate, enabling, log):
    nic = need.nic
    s_vlan, vids = vlan_filters(nic)
    old_s = _old_int(changed, "VLAN_ID", nic.vlan_id)
    old_c = _old_vids(changed, "CVLANS", nic.get("CVLANS"))
    old_t = _old_vids(changed, "VLAN_TAGGED_ID", nic.get("VLAN_TAGGED_ID"))
    old_all = set(old_c) | set(old_t) | ({old_s} if old_c and old_s else set())
    new_all = set(vids) | ({s_vlan} if s_vlan is not None else set())
    remove = sorted(old_all - new_all)
    tap = vm.tap_name(nic)
    ports = ([(tap, remove)] if view.master(tap) == need.bridge
             and port_owner.own_tap(vm, nic, tap, log, [need.device]) else [])
    # a re-created device starts with no filters: nothing to remove from it
    ports.append((need.device, () if recreate else remove))
    return plan_filters(view, need.bridge, ports, s_vlan, vids, enabling)


def _old_int(changed, key, current):
    if key not in changed:
        return current
    try:
        return int(changed[key])
    except ValueError:
        return None  # an old value that never parsed was never applied either


def _old_vids(changed, key, current):
    return old_vlan_ranges(changed.get(key, current), f"VNET_UPDATE {key}")
