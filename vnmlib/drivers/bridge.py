"""bridge: VM NICs on a Linux bridge, PHYDEV as uplink, optional VLAN trunking (reference §2.2).

The handlers select NICs by ``ctx.driver`` so that drivers built on the
bridge (fw) reuse them for their own NICs.
"""

from vnmlib.drivers import action_table, privileged, succeed, with_qos
from vnmlib.host import port_owner, steps
from vnmlib.host.change import change_links
from vnmlib.linux import bridge as linux_bridge
from vnmlib.model.naming import check_ifname, old_vlan_ranges


@privileged
def pre(ctx):
    # pre ignores ATTACH: creating what exists already is a no-op (reference §5.4).
    linux_bridge.attach(ctx, ctx.vm.driver_nics(ctx.driver))  # and the bridge's TProxy


@privileged
def post(ctx):
    """VLAN trunking for NICs with ``VLAN_TAGGED_ID``: tap and PHYDEV carry the VIDs."""
    vm = ctx.vm
    trunks = [(nic, nic.tagged_vlans()) for nic in vm.scoped_nics(ctx.driver)]
    trunks = [(nic, vids) for nic, vids in trunks if vids]
    if not trunks:
        return
    names = [n.bridge for n, _ in trunks] + [n.phydev for n, _ in trunks if n.phydev]

    def plan(view):
        planned = []
        for nic, vids in trunks:
            ports = [linux_bridge.require_tap(view, vm, nic, nic.bridge)]
            ports += [nic.phydev] if nic.phydev else []
            planned += linux_bridge.plan_trunk(view, nic.bridge, ports, vids)
        return planned

    change_links(ctx.log, names, plan)


@privileged
def clean(ctx):
    plugged = ctx.vm.hotplugged()
    if plugged is not None and plugged.kind != "NIC":
        return  # alias or PCI hot-plug: no bridge-level work (reference special_hotplug?)
    linux_bridge.release(ctx, ctx.vm.scoped_nics(ctx.driver))  # TProxy with the last guest


@with_qos
@privileged
def update_nic(ctx):
    """Live vnet update: ``VNET_UPDATE`` holds the old PHYDEV / VLAN_TAGGED_ID."""
    vm = ctx.vm
    vnet_id = ctx.int_arg(1, "vnet_id")
    changed = vm.vnet_update
    nics = [n for n in vm.driver_nics(ctx.driver) if n.network_id == vnet_id]
    if not nics or not ({"PHYDEV", "VLAN_TAGGED_ID"} & set(changed)):
        return
    old_phydev = changed.get("PHYDEV", "")
    if old_phydev:
        check_ifname(old_phydev, "VNET_UPDATE PHYDEV")
    names = [n.bridge for n in nics] + [n.phydev for n in nics if n.phydev]

    def plan(view):
        planned = []
        for nic in nics:
            bridge = nic.bridge
            if "PHYDEV" in changed:
                if old_phydev and old_phydev != nic.phydev and view.master(old_phydev) == bridge:
                    planned.append(steps.SetNoMaster(old_phydev, bridge))
                    view.planned_masters[old_phydev] = None
                if nic.phydev:
                    planned += linux_bridge.plan_uplink(view, nic.phydev, bridge, nic.label)
            if "VLAN_TAGGED_ID" in changed:
                planned += _retrunk(view, vm, nic, changed["VLAN_TAGGED_ID"], ctx.log)
        return planned

    change_links(ctx.log, names + ([old_phydev] if old_phydev else []), plan)


def _retrunk(view, vm, nic, old_text, log):
    old = old_vlan_ranges(old_text, "VNET_UPDATE VLAN_TAGGED_ID")
    new = nic.tagged_vlans()
    ports = [nic.phydev] if nic.phydev else []
    tap = vm.tap_name(nic)
    if view.master(tap) == nic.bridge and port_owner.own_tap(vm, nic, tap, log):
        ports.insert(0, tap)
    remove = [v for v in old if v not in new]
    return linux_bridge.plan_trunk(view, nic.bridge, ports, new, remove)


ACTIONS = action_table(pre, post, clean, succeed, update_nic)
