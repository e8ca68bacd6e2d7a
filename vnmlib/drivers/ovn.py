"""ovn: networks as OVN logical switches, security groups as Port_Groups with ACLs.

Front-end actions (write the northbound database; oned runs them on the
front-end: ``vnet_create``/``vnet_delete`` always, ``pre``, ``clean`` and
``update_sg`` when VNMAD_LOCAL_ACTIONS lists ``ovn-pre ovn-clean ovn-update_sg``):
``pre`` makes the VM's ports with their anti-spoofing and security groups
before it starts, ``clean`` removes them, ``update_sg`` rewrites a group's
ACLs for all its ports at once. Host action: ``post`` binds each tap on
br-int to its port and waits until ovn-controller has installed it.
See docs/drivers/ovn.md.
"""

from vnmlib.drivers import action_table, privileged, with_qos


def _front_end_vm(ctx):
    """(VM, its scoped NICs, the XML root) for a front-end action."""
    from vnmlib.model.template import decode_base64, parse_xml

    vm = ctx.vm
    return vm, vm.scoped_nics(ctx.driver), parse_xml(decode_base64(ctx.stdin), "VM")


def _alias_hotplug(ctx):
    """(the alias being attached or detached, its parent NIC of this driver), or None."""
    vm = ctx.vm
    plugged = vm.hotplugged()
    if plugged is None or plugged.kind != "NIC_ALIAS":
        return None
    parent = vm.alias_parent(plugged, ctx.driver)
    return None if parent is None else (plugged, parent)


def pre(ctx):
    from vnmlib.ovn import front, ports

    vm, nics, root = _front_end_vm(ctx)
    alias = _alias_hotplug(ctx)
    if alias is not None:
        nics = [alias[1]]  # the parent's port gains the alias's addresses and floating IPs
    if not nics:
        return
    wanted = ports.wanted(vm, nics, ctx.driver, ports.last_host(root))
    front.pre(ctx.conf, vm.id, wanted, ctx.log)


@privileged
def post(ctx):
    from vnmlib.ovn import host

    host.bind(ctx.vm, ctx.vm.scoped_nics(ctx.driver), host.bind_timeout(ctx.conf), ctx.log)


def clean(ctx):
    from vnmlib.ovn import front, names

    if not ctx.argv or not ctx.argv[0]:
        from vnmlib.errors import VnmError

        raise VnmError("usage: clean <host>")
    vm = ctx.vm
    alias = _alias_hotplug(ctx)
    if alias is not None:  # the parent's port loses the alias's addresses and floating IPs
        from vnmlib.ovn import ports

        leaving, parent = alias
        host = ports.last_host(_front_end_vm(ctx)[2])  # where it runs: its binding stays
        front.pre(ctx.conf, vm.id, ports.wanted(vm, [parent], ctx.driver, host, leaving),
                  ctx.log)
        return
    nics = vm.scoped_nics(ctx.driver)
    if nics:
        front.clean(ctx.conf, vm.id, {names.port(vm.id, n.nic_id) for n in nics}, ctx.argv[0],
                    ctx.log)


def update_sg(ctx):
    from vnmlib.firewall.sg_rules import nic_groups, rules_by_group
    from vnmlib.ovn import front

    vm = ctx.vm
    groups = rules_by_group(rule.attrs for rule in vm.rules)
    sg_rules = {}
    for nic in vm.driver_nics(ctx.driver):
        sg_rules.update(dict(nic_groups(nic, groups)))
    if sg_rules:
        front.update_sg(ctx.conf, vm.id, sg_rules, ctx.log)


def vnet_create(ctx):
    from vnmlib.ovn import front, switch

    wanted = switch.wanted(ctx.stdin)
    front.vnet_create(ctx.conf, wanted, ctx.log)


def vnet_delete(ctx):
    from vnmlib.ovn import front, switch

    front.vnet_delete(ctx.conf, switch.vnet_id(ctx.stdin), ctx.log)


@with_qos
def update_nic(ctx):
    """A network update on the host: the NICs' new bandwidth limits through libvirt, as
    every driver (``with_qos``); nothing of the NB port changes. QoS stays libvirt's
    because libvirt already shapes the tap from the domain XML oned writes at boot: an
    OVN meter set here would be a second limit the next update could not lift. The
    rest of a network update (DNS, gateway, MTU) is the switch's DHCP options, a
    network's, which ``vnet_create`` writes."""


ACTIONS = {**action_table(pre, post, clean, update_sg, update_nic),
           "vnet_create": vnet_create, "vnet_delete": vnet_delete}
