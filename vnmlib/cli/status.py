"""vnm status: the VM NICs vnm serves on this host, and what looks wrong."""

import click

from vnmlib.cli.output import emit
from vnmlib.cli.run import TREE


@click.command(name="status")
@click.option("--vm", "vm_id", type=int, help="only this VM's NICs")
@click.option("--json", "as_json", is_flag=True, help="everything found, as JSON")
@TREE
def command(vm_id, as_json, tree):
    """Per VM NIC: tap and its bridge, security-group chains and nat chains
    (nodeport, elastic) with their rule counts, ipsets, Open vSwitch port and
    flows, OVN logical port (installed by ovn-controller or not), bridge-user
    records; anything inconsistent (chains without tap,
    records keeping a bridge, flows without port…) is flagged, and so is a
    protected NIC whose traffic may not reach its chains (another rule
    accepting it before vnm's jump, a missing jump,
    chain, family or ipset), and, with :ovs_security_groups:, an Open vSwitch
    port without security-group flows; the exit code is 1 then. Locks held now are listed
    with their holders. The firewall is read through the backend the tree's
    OpenNebulaNetwork.conf selects (firewall_backend)."""
    from vnmlib import firewall
    from vnmlib.model import config
    from vnmlib.ops import inventory
    from vnmlib.host.locks import identify
    from vnmlib.cli.run import default_tree
    from vnmlib.cli.status_protection import nic_problems

    identify("status")  # names it in the WARN lines of a damaged run directory
    conf = config.load(config.conf_path(tree or default_tree()))
    inv = inventory.read(firewall.backend_of(conf))
    nics = [n for key, n in sorted(inv.nics.items()) if vm_id is None or key[0] == vm_id]
    for nic in nics:
        if nic.tap is not None:  # chains without a tap are flagged as such already
            nic.unprotected = nic_problems(inv.tables, nic.base, nic.master, inv.ipset_names)
    _ovs_security_groups(conf, inv, nics)
    if as_json:
        emit([n.as_dict() for n in nics], (), True)
    else:
        rows = [{"nic": f"{n.vm_id}/{n.nic_id}", "tap": n.tap or "-",
                 "bridge": n.ovs_port or n.master or ",".join(n.records) or "-",
                 "rules": _counts(n, n.rules), "nat": _counts(n, n.nat),
                 "ipsets": len(n.ipsets), "ovs flows": n.ovs_flows or "-",
                 "ovn": _ovn(n), "problems": "; ".join(n.problems()) or "ok"} for n in nics]
        emit(rows, [(k, k) for k in ("nic", "tap", "bridge", "rules", "nat", "ipsets",
                                     "ovs flows", "ovn", "problems")], False)
        _held_locks()
    if any(n.problems() for n in nics):
        raise SystemExit(1)


def _counts(nic, chains):
    """``i:5 o:7``, ``dnat:1 snat:1``: the NIC's chains by suffix, with their rule counts."""
    return " ".join(f"{c[len(nic.base) + 1:]}:{k}" for c, k in sorted(chains.items())) or "-"


def _ovn(nic):
    """The OVN logical port the NIC's interface is bound to, and whether it is installed."""
    if not nic.ovn_port:
        return "-"
    return f"{nic.ovn_port} ({'installed' if nic.ovn_installed else 'not installed'})"


def _held_locks():
    """The locks actions hold right now: who (pid, action, VM) and for how long."""
    from vnmlib.host.locks import held_locks

    held = held_locks()
    if held:
        emit([{"lock": h["lock"], "pid": h["pid"], "action": h["action"] or "?",
               "vm": "-" if h["vm"] is None else h["vm"],
               "age": "?" if h["age"] is None else f"{h['age']:.1f} s"} for h in held],
             [(k, k) for k in ("lock", "pid", "action", "vm", "age")], False,
             title="held locks:")


def _ovs_security_groups(conf, inv, nics):
    """With ``:ovs_security_groups:`` set, an Open vSwitch port whose flows have no
    security-group tables (posted before the option was) is flagged: its VM's
    groups are configured but not enforced."""
    from vnmlib.model.config import is_true
    from vnmlib.ovs.sg_flows import enforcing_nics

    if not is_true(conf.get("ovs_security_groups")):
        return
    enforcing = set()
    for bridge in inv.ovs_bridges:
        enforcing |= enforcing_nics(bridge)
    for nic in nics:
        if nic.ovs_port is not None and (nic.vm_id, nic.nic_id) not in enforcing:
            nic.unprotected.append("security groups configured (:ovs_security_groups:) but not "
                                   "enforced: no conntrack flows on its port (post or update_sg "
                                   "again)")
