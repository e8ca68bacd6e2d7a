"""The names and tags vnm gives its northbound rows.

Every row vnm writes carries ``external_ids`` saying which OpenNebula object
it stands for, so that vnm finds its rows by tag (never by parsing names) and
never touches rows other tools wrote.
"""

VNET_ID = "opennebula:vnet_id"
VM_ID = "opennebula:vm_id"
NIC_ID = "opennebula:nic_id"
SG_ID = "opennebula:sg_id"
FAMILY = "opennebula:family"
OWNER = "opennebula:owner"
OWNER_VALUE = "vnm"
# a switch's port that is no NIC's: its way out to a provider network
ROLE = "opennebula:role"
LOCALNET_ROLE = "localnet"
ROUTER_ROLE = "router"  # a switch's port to its network's router (vnmlib.ovn.router)

# Port groups: names are matched as ``@name`` in ACLs, so letters, digits and "_" only.
DROP_GROUP = "one_sg_drop"


def switch(vnet_id):
    return f"one-vnet-{vnet_id}"


def localnet(vnet_id):
    """The switch's localnet port (no VM's port is named ``one-vnet-…``)."""
    return f"one-vnet-{vnet_id}-localnet"


def router(vnet_id):
    return f"one-router-{vnet_id}"


def router_port(vnet_id, side):
    """The router's port on the network (side 1) or on the external network (side 2)."""
    return f"lrp-one-router-{vnet_id}-{'int' if side == 1 else 'ext'}"


def router_switch_port(vnet_id, side):
    """The switch port facing :func:`router_port` (no VM's port is named ``one-router-…``)."""
    return f"one-router-{vnet_id}-{'int' if side == 1 else 'ext'}"


def port(vm_id, nic_id):
    """The logical port of a VM's NIC: the name oned gives its tap (``one-<vm>-<nic>``)."""
    return f"one-{vm_id}-{nic_id}"


def group(sg_id):
    return f"one_sg_{sg_id}"


def tags(**ids):
    """external_ids for a row: vnm as the owner and the given OpenNebula ids."""
    keys = {"vnet_id": VNET_ID, "vm_id": VM_ID, "nic_id": NIC_ID, "sg_id": SG_ID,
            "family": FAMILY}
    out = {OWNER: OWNER_VALUE}
    out.update({keys[name]: str(value) for name, value in ids.items()})
    return out
