"""The actions of the Open vSwitch drivers: bridges, uplinks, VM ports and their flows
(reference §2.6, §2.7).

The mechanism of the ovswitch and ovswitch_vxlan drivers, which differ in the
need (:mod:`vnmlib.ovs.need`: the uplink is PHYDEV, or a VXLAN device).

- ``pre`` (:func:`attach`): bridge, uplink; one ovs-vsctl transaction. For
  ``BRIDGE_TYPE=openvswitch_dpdk`` also the NICs' vhost-user ports
  (:mod:`vnmlib.ovs.vhost_user`), which ``post`` adds too when missing. NICs
  that enforce security groups get their port row and flows before the tap
  exists (:mod:`vnmlib.ovs.pre_guard`, ``:protect_in_pre:``).
- ``post`` (:func:`configure_ports`): each VM port's VLAN settings and vnm's
  mark naming its NIC (one transaction, :mod:`vnmlib.ovs.port_settings`) and its
  flows (one bundle per bridge, :mod:`vnmlib.ovs.flow_plan`).
- ``clean`` (:func:`release`): the NICs' flows and ports, then the bridge when
  only its uplink is left and no other NIC uses it (SPEC decision 4).
- ``update_nic`` (:func:`update`): port settings and uplink of a changed network.
- ``update_sg`` (:func:`update_security_groups`): the flows of the NICs that
  enforce security groups (``:ovs_security_groups:``, :mod:`vnmlib.ovs.sg_flows`).

Only a port provably the NIC's is configured, re-configured or deleted
(:mod:`vnmlib.ovs.port_ownership`, issue 23.4).

The reference took no lock for OVS and raced (#2629, #6985, #7059); every
action here holds the :class:`~vnmlib.host.locks.LinkLocks` of the bridges and
uplinks it plans for, the same locks the Linux-bridge drivers use, and reads
OVSDB under them (:func:`vnmlib.host.change.change_links`, :mod:`vnmlib.ovs.view`).
"""

from vnmlib.errors import VnmError
from vnmlib.host.change import change_links
from vnmlib.host.locks import BridgeUsers, nic_user
from vnmlib.ovs.bridge_plan import plan_attach, plan_release, plan_uplink_swap, wanted_options
from vnmlib.ovs.flow_plan import plan_flows
from vnmlib.ovs.port_ownership import owned_taps
from vnmlib.ovs.port_settings import PORT_KEYS, plan_port_settings, port_columns
from vnmlib.ovs.pre_guard import guarded_nics, plan_guards
from vnmlib.ovs.sg_flows import enabled as enforces_groups, vm_groups
from vnmlib.ovs.vhost_user import plan_ports as plan_vhost_ports, uses_vhost_user
from vnmlib.ovs.view import reader


def attach(ctx, need_type):
    """``pre``: every NIC of the driver gets its bridge and uplink; recorded as a bridge user.

    A NIC enforcing security groups gets its port row and flows before its
    tap exists (:mod:`vnmlib.ovs.pre_guard`), in the same plan: if they fail,
    the bridge and uplink this ``pre`` made are undone with them.
    """
    needs = [need_type(nic, ctx.conf) for nic in ctx.vm.driver_nics(ctx.driver)]
    if not needs:
        return
    for need in needs:
        need.uplink  # validate PHYDEV / OUTER_VLAN_ID before anything changes
    # their MACs and TARGETs checked here too
    guarded = guarded_nics(ctx.vm, ctx.driver, ctx.conf, {need.uplink for need in needs})
    # recorded before anything is built: a full run directory builds nothing
    records = [(need.bridge, nic_user(need.nic.vm_id, need.nic.nic_id)) for need in needs]
    vm = ctx.vm
    uplinks = {need.bridge: need.uplink for need in needs if need.uplink}

    def plan(view):
        # openvswitch_dpdk: vnm adds the vhost-user ports, before the domain starts
        return (plan_attach(view, needs) + plan_vhost_ports(view.state, vm, needs)
                + plan_guards(view, vm, ctx.driver, ctx.conf, guarded, uplinks))

    change_links(ctx.log, [name for need in needs for name in need.link_names()],
                 plan, read=reader(wanted_options(needs)), users=records)


def configure_ports(ctx, need_type):
    """``post``: settings, mark and flows of the VM's ports (only the hot-plugged one's
    when attaching); a port that is not provably the NIC's: one error, nothing changed."""
    vm, driver = ctx.vm, ctx.driver
    plugged = vm.hotplugged()
    flows_only = plugged is not None and plugged.kind == "NIC_ALIAS"
    if flows_only:
        parent = vm.alias_parent(plugged, driver)
        nics = [parent] if parent is not None else []  # the parent's port gets the alias' flows
    else:
        nics = vm.scoped_nics(driver)
    if not nics:
        return
    needs = [need_type(nic, ctx.conf) for nic in nics]
    for need in needs:
        need.uplink  # validate PHYDEV / OUTER_VLAN_ID: the port must not be the uplink
    if any(enforces_groups(ctx.conf, nic) for nic in nics):
        vm_groups(vm)  # a bad rule fails before anything changes, naming the rule
    bridges = sorted({nic.bridge for nic in nics})
    if not flows_only and any(uses_vhost_user(nic) for nic in nics):
        # openvswitch_dpdk: a vhost-user port pre did not add (the reference adds it in
        # both); its own transaction, so that the settings below read its OpenFlow port
        change_links(ctx.log, bridges, lambda view: plan_vhost_ports(view.state, vm, needs),
                     read=reader())

    def plan(view):
        planned = [] if flows_only else plan_port_settings(view.state, vm, needs)
        return planned + plan_flows(view.state, vm, driver, needs, ctx.conf)

    change_links(ctx.log, bridges, plan, read=reader())


def update_security_groups(ctx, need_type):
    """``update_sg``: every NIC of the driver that enforces security groups gets its
    flows again, all of a bridge's in one bundle (old rules or new, never none).

    Without ``:ovs_security_groups:`` it fails as the reference's does: the
    VM's groups would silently not apply.
    """
    vm = ctx.vm
    nics = [nic for nic in vm.driver_nics(ctx.driver) if enforces_groups(ctx.conf, nic)]
    if not nics:
        raise VnmError(f"Security groups not supported for {ctx.driver} (Open vSwitch "
                       "networks filter MAC/IP spoofing only unless :ovs_security_groups: "
                       "is set)")
    vm_groups(vm)  # a bad rule fails here, before any lock or change, naming the rule
    needs = [need_type(nic, ctx.conf) for nic in nics]
    change_links(ctx.log, sorted({nic.bridge for nic in nics}),
                 lambda view: plan_flows(view.state, vm, ctx.driver, needs, ctx.conf),
                 read=reader())


def release(ctx, need_type):
    """``clean``: the NICs' flows and ports; bridges nobody uses any more."""
    vm, driver = ctx.vm, ctx.driver
    plugged = vm.hotplugged()
    if plugged is not None and plugged.kind == "NIC_ALIAS":
        _release_alias(ctx, plugged, need_type)
        return
    needs = [need_type(nic, ctx.conf) for nic in vm.scoped_nics(driver)]
    if not needs:
        return

    def plan(view):
        users = BridgeUsers()
        for need in needs:
            users.remove(need.bridge, nic_user(need.nic.vm_id, need.nic.nic_id))
        owned = owned_taps(view.state, vm, needs, ctx.log)
        return plan_release(view, vm, needs, users, owned)

    change_links(ctx.log, [name for need in needs for name in need.link_names()], plan,
                 read=reader())


def _release_alias(ctx, alias, need_type):
    """A detached alias: its parent's port keeps its flows minus the alias' addresses."""
    vm, driver = ctx.vm, ctx.driver
    parent = vm.alias_parent(alias, driver)
    if parent is None:
        return
    need = need_type(parent, ctx.conf)

    def plan(view):
        if view.state.bridge_of(vm.tap_name(parent)) != parent.bridge:
            return []  # the parent's port is gone too: nothing carries the alias any more
        if not owned_taps(view.state, vm, [need], ctx.log):
            return []  # not the parent's port: its flows are its owner's
        return plan_flows(view.state, vm, driver, [need], ctx.conf, leaving_alias=alias)

    change_links(ctx.log, [parent.bridge], plan, read=reader())


def update(ctx, need_type, uplink_keys):
    """``update_nic``: ``VNET_UPDATE`` holds the old values of what changed.

    Port settings (:data:`~vnmlib.ovs.port_settings.PORT_KEYS`) are applied
    again to each NIC's port; an uplink change (``uplink_keys``: PHYDEV, and
    OUTER_VLAN_ID for ovswitch_vxlan) swaps the bridge's uplink port, deleting
    an old VXLAN device that was this bridge's.
    """
    vm = ctx.vm
    vnet_id = ctx.int_arg(1, "vnet_id")
    changed = set(vm.vnet_update)
    nics = [n for n in vm.driver_nics(ctx.driver) if n.network_id == vnet_id]
    reconfigure = bool(PORT_KEYS & changed)
    swap = bool(uplink_keys & changed)
    if not nics or not (reconfigure or swap):
        return
    needs = [need_type(nic, ctx.conf) for nic in nics]
    for need in needs:
        need.uplink  # validate the new values before anything changes
        if reconfigure:
            port_columns(need.nic)
    olds = [need.old_uplink(vm.vnet_update) if swap else "" for need in needs]
    names = [n for need in needs for n in need.link_names()] + [o for o in olds if o]

    def plan(view):
        # a port not provably the NIC's keeps its settings (a WARN line each)
        owned = owned_taps(view.state, vm, needs, ctx.log) if reconfigure else set()
        planned = plan_uplink_swap(view, needs, olds) if swap else []
        if reconfigure:
            present = [need for need in needs if vm.tap_name(need.nic) in owned]
            if present:
                planned += plan_port_settings(view.state, vm, present)
        return planned

    change_links(ctx.log, names, plan, read=reader())
