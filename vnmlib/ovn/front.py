"""The front-end actions: each is one northbound transaction, planned from validated input.

vnet_create / vnet_delete make and remove a network's switch (and router);
pre makes a VM's ports (before the VM starts: protected from its first packet)
and floating IPs, clean removes them, update_sg rewrites its security groups'
ACLs. Rows are found by their vnm tags (:mod:`vnmlib.ovn.names`); rows without
them are never changed.
"""

from vnmlib.errors import VnmError
from vnmlib.host import steps
from vnmlib.ovn import acls, names, nb, router


class NbTransaction(steps.Step):
    """One northbound transaction as a step: ``vnm plan`` shows it and changes nothing
    (plan mode is decided in :func:`vnmlib.host.steps.apply`); applied, it connects,
    lets ``build(northbound, txn)`` write, and commits. Undone by nothing: the
    transaction is all or nothing."""

    def __init__(self, conf, what, shown, build, tables=None):
        self.conf, self.what, self.shown, self.build, self.tables = conf, what, shown, build, tables

    def describe(self):
        return f"ovn: NB transaction: {self.shown}"

    def apply(self, nl):
        with nb.connect(self.conf, self.tables) as northbound:
            northbound.transact(self.what, lambda txn: self.build(northbound, txn))


def _commit(conf, log, what, shown, build, tables=None):
    steps.apply([NbTransaction(conf, what, shown, build, tables)], log)


def _tagged(rows, **ids):
    """Rows whose external_ids hold every ``ids`` tag (and vnm as owner)."""
    wanted = names.tags(**ids)
    return [r for r in rows if all(r.external_ids.get(k) == v for k, v in wanted.items())]


def _one(rows):
    return rows[0] if rows else None


def _switch(northbound, vnet_id):
    return _one(_tagged(northbound.table("Logical_Switch"), vnet_id=vnet_id))


def _group_by_name(northbound):
    return {g.name: g for g in northbound.table("Port_Group")}


# -- networks --------------------------------------------------------------------

def _is_localnet(port):
    return (port.external_ids.get(names.OWNER) == names.OWNER_VALUE
            and port.external_ids.get(names.ROLE) == names.LOCALNET_ROLE)


def _set_localnet(txn, northbound, switch, wanted):
    """The switch's localnet port as ``wanted.localnet`` says: made, updated or removed."""
    current = [p for p in switch.ports if _is_localnet(p)]
    if wanted.localnet is None:
        for row in current:
            switch.delvalue("ports", row)  # unreferenced, the row goes with the transaction
        return
    network, vlan = wanted.localnet
    if current:
        row = current[0]
    else:
        row = txn.insert(northbound.idl.tables["Logical_Switch_Port"])
        row.name = names.localnet(wanted.vnet_id)
        switch.addvalue("ports", row)
    row.type = "localnet"
    row.addresses = ["unknown"]  # the provider network's hosts: any MAC
    row.options = {"network_name": network}
    row.tag = [vlan] if vlan is not None else []
    row.external_ids = dict(names.tags(vnet_id=wanted.vnet_id),
                            **{names.ROLE: names.LOCALNET_ROLE})


def _own_router_port(port, vnet_id):
    """A port to the network's own router (not another network's router on this switch)."""
    return (port.external_ids.get(names.ROLE) == names.ROUTER_ROLE
            and port.external_ids.get(names.OWNER) == names.OWNER_VALUE
            and port.external_ids.get(names.VNET_ID) == str(vnet_id))


def vnet_create(conf, wanted, log):
    """The network's switch and DHCP options (its localnet port on a provider network, its
    router to an external network), created or brought up to date."""
    def build(northbound, txn):
        switch = _switch(northbound, wanted.vnet_id)
        if switch is None:
            switch = txn.insert(northbound.idl.tables["Logical_Switch"])
            switch.ports = []  # a new row's columns are read below
        switch.name = wanted.name
        switch.external_ids = wanted.external_ids
        _set_localnet(txn, northbound, switch, wanted)
        if wanted.router is None:
            router.remove(northbound, _tagged(northbound.table("Logical_Switch")),
                          wanted.vnet_id)
        else:
            external = _switch(northbound, wanted.router.external_vnet)
            if external is None:
                raise VnmError(f"OVN_EXTERNAL_NETWORK {wanted.router.external_vnet} has no OVN "
                               "logical switch (did its vnet_create run with the ovn driver?)")
            router.ensure(txn, northbound, switch, external, wanted.router)
        current = {r.external_ids.get(names.FAMILY): r for r in
                   _tagged(northbound.table("DHCP_Options"), vnet_id=wanted.vnet_id)}
        for family in (4, 6):
            row = current.get(str(family))
            if family not in wanted.dhcp:
                if row is not None:
                    row.delete()
                continue
            if row is None:
                row = txn.insert(northbound.idl.tables["DHCP_Options"])
            row.cidr, row.options = wanted.dhcp[family]
            row.external_ids = names.tags(vnet_id=wanted.vnet_id, family=family)

    families = ", ".join(f"IPv{f}" for f in sorted(wanted.dhcp)) or "none"
    provider = ""
    if wanted.localnet is not None:
        network, vlan = wanted.localnet
        provider = (f", localnet port to provider network {network}"
                    + (f" VLAN {vlan}" if vlan is not None else ""))
    if wanted.router is not None:
        provider += f", {wanted.router.shown()}"
    _commit(conf, log, f"vnet_create of network {wanted.vnet_id}",
            f"logical switch {wanted.name} (network {wanted.vnet_id}), DHCP options: {families}"
            f"{provider}", build)


def vnet_delete(conf, vnet_id, log):
    """The network's switch, DHCP options and localnet port removed; refused while it
    has VMs' ports."""
    def build(northbound, txn):
        switch = _switch(northbound, vnet_id)
        if switch is not None:
            left = sorted(p.name for p in switch.ports
                          if not _is_localnet(p) and not _own_router_port(p, vnet_id))
            if left:
                raise VnmError(f"network {vnet_id}: logical switch {switch.name} still "
                               f"has ports: {', '.join(left)}; refused")
            router.remove(northbound, _tagged(northbound.table("Logical_Switch")), vnet_id)
            switch.delete()
        for row in _tagged(northbound.table("DHCP_Options"), vnet_id=vnet_id):
            row.delete()

    _commit(conf, log, f"vnet_delete of network {vnet_id}",
            f"delete logical switch {names.switch(vnet_id)}, its DHCP options, localnet port "
            "and router (refused while it has VMs' or other routers' ports)", build)


# -- security groups ---------------------------------------------------------------

def _set_acls(txn, northbound, group, wanted):
    """``group``'s ACLs become ``wanted`` (:class:`~vnmlib.ovn.acls.Acl`), if they differ."""
    group.verify("acls")
    if {a.key() for a in wanted} == {(r.direction, r.priority, r.match, r.action)
                                     for r in group.acls}:
        return
    rows = []
    for acl in wanted:
        row = txn.insert(northbound.idl.tables["ACL"])
        row.direction, row.priority, row.match, row.action = acl.key()
        row.external_ids = {names.OWNER: names.OWNER_VALUE}
        rows.append(row)
    group.acls = rows  # the old ACL rows, no longer referenced, go with the transaction


def _ensure_group(txn, northbound, groups, name, external_ids, wanted_acls):
    group = groups.get(name)
    if group is None:
        group = txn.insert(northbound.idl.tables["Port_Group"])
        group.name = name
        group.external_ids = external_ids
        group.ports, group.acls = [], []  # a new row's columns are read below
        groups[name] = group
    elif group.external_ids.get(names.OWNER) != names.OWNER_VALUE:
        raise VnmError(f"Port_Group {name} exists and is not vnm's; refused")
    _set_acls(txn, northbound, group, wanted_acls)
    return group


def _security_groups(txn, northbound, groups, sg_rules):
    """Each (sg_id, rules) as its Port_Group with its ACLs: {sg_id: group row}."""
    return {sg_id: _ensure_group(txn, northbound, groups, names.group(sg_id),
                                 names.tags(sg_id=sg_id), acls.group_acls(sg_id, rules))
            for sg_id, rules in sg_rules.items()}


def update_sg(conf, vm_id, sg_rules, log):
    """Every security group of the VM's NICs gets the VM's current rules: one transaction
    for all of them, which changes the filtering of every port in them at once.

    A group no port is in yet has no Port_Group: ``pre`` makes it with the port.
    """
    tables = {"Port_Group": ["name", "external_ids", "acls"], "ACL": None}

    def build(northbound, txn):
        groups = _group_by_name(northbound)
        for sg_id, rules in sg_rules.items():
            group = groups.get(names.group(sg_id))
            if group is not None and group.external_ids.get(names.OWNER) == names.OWNER_VALUE:
                _set_acls(txn, northbound, group, acls.group_acls(sg_id, rules))

    _commit(conf, log, f"update_sg of VM {vm_id}",
            f"ACLs of the Port_Groups of security groups {', '.join(sorted(sg_rules))}",
            build, tables)


# -- ports -------------------------------------------------------------------------

class _Index:
    """Ports, their switches and vnm's groups' members, read once per transaction: looked
    up per NIC, each read would convert a large cloud's every row again."""

    def __init__(self, northbound, groups):
        self.ports = {p.name: p for p in northbound.table("Logical_Switch_Port")}
        self.switch_of = {}
        for switch in northbound.table("Logical_Switch"):
            for member in switch.ports:
                self.switch_of[member.uuid] = switch
        self.members = {g.uuid: {m.uuid for m in g.ports} for g in groups.values()
                        if g.external_ids.get(names.OWNER) == names.OWNER_VALUE}


def _write_port(txn, northbound, index, port, switches, dhcp):
    switch = switches.get(port.vnet_id)
    if switch is None:
        raise VnmError(f"{port.nic.label}: network {port.vnet_id} has no OVN logical switch "
                       "(did vnet_create run with the ovn driver?)")
    row = index.ports.get(port.name)
    if row is not None and row.external_ids.get(names.VM_ID) != port.external_ids[names.VM_ID]:
        raise VnmError(f"{port.nic.label}: logical port {port.name} exists and is not this "
                       "VM's; refused")
    if row is not None and index.switch_of.get(row.uuid) != switch:
        if row.uuid in index.switch_of:  # the NIC moved to another network
            index.switch_of[row.uuid].delvalue("ports", row)
        row = None
    if row is None:
        row = txn.insert(northbound.idl.tables["Logical_Switch_Port"])
        row.name = port.name
        row.options = {}
        switch.addvalue("ports", row)
    row.addresses = [port.addresses]
    row.port_security = [port.addresses]
    row.options = _chassis_options(dict(row.options), port.chassis)
    row.external_ids = port.external_ids
    row.dhcpv4_options = [dhcp[(port.vnet_id, "4")]] if (port.vnet_id, "4") in dhcp else []
    row.dhcpv6_options = [dhcp[(port.vnet_id, "6")]] if (port.vnet_id, "6") in dhcp else []
    return row


def _chassis_options(options, host):
    """``options`` with the port bound to ``host``.

    A port still bound to another host is a VM being migrated there (its
    ``pre`` on the destination runs before the source's ``clean``): OVN then
    binds it on both (multi-chassis binding, the source first), and activates
    it on the destination when the VM announces itself there with a RARP, as
    QEMU does when a live migration ends (``activation-strategy=rarp``); the
    source's ``clean`` leaves the destination only.
    """
    current = [c for c in options.get("requested-chassis", "").split(",") if c]
    if not current or current == [host]:
        options["requested-chassis"] = host
        options.pop("activation-strategy", None)
    elif host not in current:
        options["requested-chassis"] = f"{current[0]},{host}"
        options["activation-strategy"] = "rarp"
    return options


def _unbound(options, host):
    """``options`` without ``host`` among its chassis; None when it was the only one."""
    current = [c for c in options.get("requested-chassis", "").split(",") if c]
    left = [c for c in current if c != host]
    if not left:
        return None
    options = dict(options, **{"requested-chassis": ",".join(left)})
    if len(left) == 1:
        options.pop("activation-strategy", None)
    return options


def _memberships(index, groups, row, wanted_groups):
    """``row`` in exactly ``wanted_groups`` among vnm's groups."""
    wanted = {g.uuid for g in wanted_groups}
    for group in groups.values():
        members = index.members.get(group.uuid)
        if members is None:  # not vnm's
            continue
        if group.uuid in wanted and row.uuid not in members:
            group.addvalue("ports", row)
            members.add(row.uuid)
        elif group.uuid not in wanted and row.uuid in members:
            group.delvalue("ports", row)
            members.discard(row.uuid)


def _floating_ips(txn, northbound, vm_id, ports):
    """Each port's floating IPs (its NIC's and aliases') as NATs of its network's router;
    none for the others."""
    router.drop_nat(northbound, vm_id, {p.external_ids[names.NIC_ID] for p in ports
                                        if not p.floating})
    for port in ports:
        if not port.floating:
            continue
        row = router.find(northbound, port.vnet_id)
        if row is None:
            first = port.floating[0]
            raise VnmError(f"{first.label}: {first.what} {first.external} needs a router on "
                           f"network {port.vnet_id} (OVN_EXTERNAL_NETWORK in its template)")
        router.set_nat(txn, northbound, row, port)


def pre(conf, vm_id, ports, log):
    """The VM's ports, their addresses, anti-spoofing, host and security groups: one
    transaction, committed before the VM starts."""
    def build(northbound, txn):
        switches = {int(s.external_ids[names.VNET_ID]): s
                    for s in _tagged(northbound.table("Logical_Switch"))
                    if s.external_ids.get(names.VNET_ID, "").isdigit()}
        dhcp = {(int(d.external_ids[names.VNET_ID]), d.external_ids.get(names.FAMILY)): d
                for d in _tagged(northbound.table("DHCP_Options"))
                if d.external_ids.get(names.VNET_ID, "").isdigit()}
        groups = _group_by_name(northbound)
        drop = _ensure_group(txn, northbound, groups, names.DROP_GROUP, names.tags(),
                             acls.drop_acls())
        sg_rules = {}
        for port in ports:
            sg_rules.update(dict(port.groups))
        sg_rows = _security_groups(txn, northbound, groups, sg_rules)
        index = _Index(northbound, groups)
        for port in ports:
            row = _write_port(txn, northbound, index, port, switches, dhcp)
            _memberships(index, groups, row,
                         [drop] + [sg_rows[sg_id] for sg_id, _ in port.groups])
        _floating_ips(txn, northbound, vm_id, ports)

    groups = ", ".join(sorted({sg_id for p in ports for sg_id, _ in p.groups}))
    floating = ", ".join(f"{f.external} -> {f.internal}" for p in ports for f in p.floating)
    _commit(conf, log, f"pre of VM {vm_id}",
            f"logical ports {', '.join(p.name for p in ports)} bound to {ports[0].chassis}, "
            f"with port security, in security groups {groups}"
            + (f", floating IPs (dnat_and_snat) {floating}" if floating else ""), build)


def clean(conf, vm_id, port_names, host, log):
    """The VM's ports on ``host`` removed, and vnm's groups they leave empty.

    A port bound to other hosts too loses ``host`` only, and one bound to
    other hosts only stays: the VM has moved (a migration's ``clean`` of the
    source runs after the destination's ``pre``; a failed one's cleans the
    destination).
    """
    def build(northbound, txn):
        gone, gone_nics = set(), set()
        switch_of = {member.uuid: switch for switch in northbound.table("Logical_Switch")
                     for member in switch.ports}
        for row in northbound.table("Logical_Switch_Port"):
            if row.name not in port_names or row.external_ids.get(names.VM_ID) != str(vm_id):
                continue
            chassis = row.options.get("requested-chassis", host).split(",")
            if host not in chassis:
                continue
            options = _unbound(row.options, host)
            if options is not None:
                row.options = options
                continue
            if row.uuid in switch_of:
                switch_of[row.uuid].delvalue("ports", row)
            gone.add(row.uuid)
            gone_nics.add(row.external_ids.get(names.NIC_ID))
        router.drop_nat(northbound, vm_id, gone_nics)
        for group in _tagged(northbound.table("Port_Group")) if gone else ():
            if all(member.uuid in gone for member in group.ports):
                group.delete()

    _commit(conf, log, f"clean of VM {vm_id}",
            f"remove logical ports {', '.join(sorted(port_names))} bound to {host} (a port "
            f"also bound elsewhere loses {host} only)", build)
