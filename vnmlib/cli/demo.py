"""vnm demo: the README's demo."""

import click


@click.command(name="demo")
def command():
    """A VM with two NICs on a bridge: pre, the hypervisor plugs the taps, post,
    pings between the VM namespaces and a peer behind the uplink, clean; all in
    throwaway namespaces, with a tree laid out by vnm install in a temporary
    directory. Needs root."""
    from vnmlib.ops.demo import main

    raise SystemExit(main())
