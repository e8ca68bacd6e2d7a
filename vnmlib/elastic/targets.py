"""The elastic NICs and aliases an action handles, with their addresses checked."""

from vnmlib.errors import InputError

DRIVER = "elastic"


class Target:
    """One NIC or NIC_ALIAS whose ``EXTERNAL_IP`` the provider maps to its ``IP``."""

    __slots__ = ("element", "label", "base", "bridge", "ip", "external_ip", "gateway")

    def __init__(self, vm, element, parent):
        self.element = element
        self.label = element.label
        # nat chains and proxy-ARP records are per element: alias NIC_IDs are
        # unique within the VM, like NIC ones
        self.base = f"one-{vm.id}-{element.nic_id}"
        self.bridge = element.bridge if element.get("BRIDGE") else parent.bridge
        self.ip = str(_required(element, "IP"))
        self.external_ip = str(_required(element, "EXTERNAL_IP"))
        self.gateway = str(_required(element, "GATEWAY"))

    @property
    def user(self):
        return self.base[len("one-"):]

    def opts(self):
        """What a provider's calls get besides the two addresses: the NIC's attributes."""
        return dict(self.element.attrs)


def _required(element, name):
    address = element.ip_address(name, 4)
    if address is None:
        raise InputError(f"{element.label}: {name} is missing (the elastic driver needs "
                         "IP, EXTERNAL_IP and GATEWAY)")
    return address


def scoped(vm):
    """Targets of post/clean: every elastic NIC and alias, or only the hot-plugged one."""
    nics = vm.driver_nics(DRIVER)
    parents = {n.get("NIC_ID"): n for n in nics}
    aliases = vm.driver_aliases(DRIVER)
    plugged = vm.hotplugged()
    if plugged is None:
        elements = nics + aliases
    elif any(plugged is e for e in nics + aliases):
        elements = [plugged]
    else:
        return []  # another driver's NIC, or a PCI device
    return [Target(vm, e, parents.get(e.get("PARENT_ID"))) for e in elements]
