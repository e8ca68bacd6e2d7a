"""vnm why: which rule, set or flow decides one packet of a VM NIC."""

import click

from vnmlib.cli.run import TREE

_ID = click.IntRange(0, 2 ** 32 - 1)


@click.command(name="why", context_settings={"ignore_unknown_options": True})
@click.option("--vm", "vm_id", type=_ID, required=True, help="the VM's ID")
@click.option("--nic", "nic_id", type=click.IntRange(0, 2 ** 16 - 1), required=True,
              help="the NIC's NIC_ID")
@click.option("--mac", metavar="MAC",
              help="the source MAC of a packet from the VM (default: the NIC's own)")
@click.option("--in-port", "in_port", metavar="PORT",
              help="Open vSwitch only: the port a packet to the VM enters at (default LOCAL)")
@TREE
@click.option("--json", "as_json", is_flag=True, help="verdict, reason and path as JSON")
@click.argument("packet", nargs=-1, required=True)
def command(vm_id, nic_id, mac, in_port, tree, as_json, packet):
    """Which rule decides PACKET for NIC --nic of VM --vm on this host: one line
    of verdict (ACCEPT, DROP or UNDETERMINED), then the path that led there.

    PACKET is 'PROTO SRC -> DST in|out', in = to the VM, out = from it, quoted
    (the shell takes > for a redirection):
    vnm why --vm 7 --nic 1 'tcp 10.0.0.5:40000 -> 10.0.0.9:22 in'. More:

    \b
      tcp 10.0.0.5:40000 -> 10.0.0.9:22 in
      udp [fd00::9]:5353 -> [fd00::1]:53 out
      icmp:8 10.0.0.5 -> 10.0.0.9 in      (ICMP type[/code]; default echo request)
      icmpv6:135/0 fd00::5 -> fd00::9 in
      esp 10.0.0.9 -> 10.0.0.5 out

    It is taken as the first packet of a new connection. A NIC with security
    groups: its iptables chains are walked from FORWARD (INPUT for a packet to
    this host), as the configured firewall backend lists them, every ipset
    asked with 'ipset test'; with firewall_backend nft, the bridge family's
    chains on the forward (input) hook, vnm's table bridge vnm and any other,
    with the sets' elements as nft lists them; a packet to the VM is taken to
    come from the bridge's uplink side. A NIC on Open vSwitch: 'ovs-appctl ofproto/trace'
    on its bridge. Nothing is sent and nothing changes. UNDETERMINED names
    the rule whose match vnm cannot evaluate. Exit 0 with a verdict, 1 when
    undetermined, 2 on a bad PACKET."""
    import json
    import os

    from vnmlib.errors import InputError
    from vnmlib.ops.why import nic, packet as packets

    try:
        parsed = packets.parse(packet)
        mac = packets.parse_mac(mac) if mac is not None else None
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    if os.geteuid() != 0:
        raise click.ClickException("why reads iptables, ipsets, nft and Open vSwitch: run it as "
                                   "root")
    from vnmlib.cli.run import default_tree
    from vnmlib.model import config, waits

    conf = config.load(config.conf_path(tree or default_tree()))
    waits.configure(conf)  # the conf's tool_timeout and lock_timeout
    verdict = nic.explain(conf, vm_id, nic_id, parsed, in_port, mac)
    if as_json:
        click.echo(json.dumps(dict(verdict.as_dict(), packet=str(parsed)), indent=2))
    else:
        click.echo(f"{verdict.verdict}: {parsed} ({verdict.reason})")
        for step in verdict.path:
            click.echo(f"  {step}")
    if verdict.verdict == "UNDETERMINED":
        raise SystemExit(1)
