"""vnm ovn: join this host to OVN, and check its join."""

import socket

import click

from vnmlib.cli.output import emit


@click.group(name="ovn")
def command():
    """This host in OVN (the ovn driver): join it, check it."""


@command.command()
@click.option("--remote", required=True,
              help="the southbound database: tcp:HOST:6642, ssl:HOST:6642 (comma-separated "
                   "for a cluster)")
@click.option("--encap-ip", required=True, help="this host's tunnel endpoint address")
@click.option("--system-id", default=None,
              help="the chassis name: this host's name in oned (default: its hostname)")
@click.option("--encap-type", default="geneve", show_default=True,
              type=click.Choice(["geneve", "vxlan"]))
@click.option("--bridge-datapath-type", default=None, type=click.Choice(["system", "netdev"]),
              help="br-int's datapath (netdev: userspace, e.g. DPDK); default: OVN's")
@click.option("--bridge-mapping", "bridge_mappings", multiple=True, metavar="NETWORK:BRIDGE",
              help="a provider network (a network's OVN_PROVIDER_NETWORK) reached through "
                   "this host's Open vSwitch bridge BRIDGE; repeatable")
def join(remote, encap_ip, system_id, encap_type, bridge_datapath_type, bridge_mappings):
    """Set the Open vSwitch external_ids ovn-controller joins with (system-id,
    ovn-remote, ovn-encap-type, ovn-encap-ip, and ovn-bridge-mappings with
    --bridge-mapping), in one transaction."""
    from vnmlib.ovn import join as joining

    settings = joining.join_settings(remote, encap_ip, system_id or socket.gethostname(),
                                     encap_type, bridge_datapath_type, bridge_mappings)
    joining.join(settings)
    for key, value in settings.items():
        click.echo(f"external_ids:{key}={value}")


@command.command()
@click.option("--json", "as_json", is_flag=True, help="the findings as JSON")
def check(as_json):
    """Check this host's join: the external_ids, br-int, the bridges of its
    provider networks (ovn-bridge-mappings), and ovn-controller connected to the
    southbound database. Exit 1 when a check FAILs."""
    from vnmlib.ovn import join as joining

    findings = joining.check()
    rows = [{"check": c, "status": s, "detail": d} for c, s, d in findings]
    emit(rows, (("status", "status"), ("check", "check"), ("detail", "detail")), as_json)
    if any(r["status"] == joining.FAIL for r in rows):
        raise SystemExit(1)
