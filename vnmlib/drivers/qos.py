"""``update_nic``'s bandwidth part: the NICs' INBOUND_* / OUTBOUND_* set live through libvirt.

As the reference (``SGDriver#update``, ``OpenvSwitchVLAN#update``): when the
network update changed a bandwidth attribute, each of the driver's NICs on
that network gets ``virsh domiftune --live`` with its new values. It runs as
the action's caller (the handler's ``as_caller``, see
:func:`vnmlib.contract.action.run_driver_action`): everything is checked before
the privileged part runs, libvirt is called after it succeeded.

The interface is the one libvirt has for the NIC's MAC (``virsh domiflist``),
else TARGET when the domain has an interface so named; a NIC in neither is
skipped with a warning, as the reference's "Not setting QoS" (a NIC whose VM
is not running yet gets its limits from the domain XML oned writes).
"""

from vnmlib.host import libvirt_domain
from vnmlib.model import qos


def update_nic(ctx):
    """Check the request; return the libvirt work to run after the privileged part, or None."""
    vm = ctx.vm
    if not qos.requested(vm.vnet_update) or vm.vm_mad == "lxc":
        return None  # the reference sets no QoS on LXC containers
    vnet_id = ctx.int_arg(1, "vnet_id")
    wanted = [(nic, qos.limits(nic)) for nic in vm.driver_nics(ctx.driver)
              if nic.network_id == vnet_id]
    if not wanted:
        return None
    deploy_id = ctx.argv[0] if ctx.argv[0] != "-" else vm.deploy_id
    if not deploy_id:
        ctx.log.warning("Not setting QoS: the VM has no domain (no deploy_id)")
        return None
    domain = qos.domain_name(deploy_id)
    uri = libvirt_domain.connection(ctx.conf)

    def apply():
        names = libvirt_domain.interfaces(uri, domain)
        for nic, limits in wanted:
            tap = None if names is None else libvirt_domain.libvirt_tap(nic, names)
            if tap is None:
                ctx.log.warning(f"Not setting QoS. {nic.label} (MAC {nic.mac_attr() or 'unset'}, "
                                f"TARGET {nic.get('TARGET') or 'unset'}) not in domain {domain}")
                continue
            libvirt_domain.tune(uri, domain, tap, limits)

    return apply
