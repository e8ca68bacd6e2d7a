"""vnm verify: a live self-test of a VM NIC's protection on this host."""

import click

from vnmlib.cli.run import TREE

from vnmlib.cli.output import emit


@click.command(name="verify")
@click.option("--vm", "vm_id", type=click.IntRange(0, 2 ** 32 - 1), required=True,
              help="the VM's ID")
@click.option("--nic", "nic_id", type=click.IntRange(0, 2 ** 16 - 1),
              help="only this NIC_ID (default: every NIC of the VM here)")
@click.option("--no-probe", "no_probe", is_flag=True,
              help="evaluate only: add no probe port to the VM's bridge")
@TREE
@click.option("--json", "as_json", is_flag=True, help="the checks as JSON")
def command(vm_id, nic_id, no_probe, tree, as_json):
    """Check what the VM's NIC protection enforces here, one line per check:
    enforced, off (not configured), HOLE (configured yet passing), FAIL (the
    rules allow a packet that is not delivered) or not run. Exit 1 on a HOLE
    or FAIL.

    A probe cannot stand in the VM's place (the rules are keyed on its tap,
    which exists while the VM runs), so each check says how it knows:

    \b
    evaluated: packets as if from the VM (spoofed source IPv4/IPv6 and MAC,
      router advertisement, DHCP server reply) through the NIC's live rules
      and ipsets (nft chains and sets with firewall_backend nft), as 'vnm
      why' walks them; the ARP sender check of its
      wire guard; and that its traffic reaches its chains at all;
    live: a throwaway veth port (vnmvp<pid>) on the VM's bridge sends a TCP
      SYN to a port the rules deny and one they allow, from 198.51.100.77
      (2001:db8:76:6e6d::77), to the VM's MAC (its MAC filter's, or the one
      the bridge learned on the tap); whether the bridge delivered it is
      read on the tap. The VM may see those two SYNs and answer them.

    The probe is removed when verify ends, on error, SIGTERM or Ctrl-C (one
    left by a killed run is removed by the next); the bridge's lock is held
    meanwhile. Nothing of the VM's rules is changed. Open vSwitch NICs are
    evaluated with ofproto/trace."""
    import os

    from vnmlib.cli.run import default_tree
    from vnmlib.cli.status_protection import nic_problems
    from vnmlib.host.locks import identify
    from vnmlib.model import config, waits
    from vnmlib.ops import verify

    if os.geteuid() != 0:
        raise click.ClickException("verify reads the firewall and adds a probe port: run it "
                                   "as root")
    identify("verify", vm_id)
    conf = config.load(config.conf_path(tree or default_tree()))
    waits.configure(conf)  # the conf's tool_timeout and lock_timeout
    checks = verify.verify(conf, vm_id, nic_id, not no_probe, nic_problems)
    emit([c.as_dict() for c in checks],
         [(k, k) for k in ("nic", "check", "how", "result", "detail")], as_json)
    if any(c.bad for c in checks):
        raise SystemExit(1)
