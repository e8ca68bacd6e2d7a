"""``vnm``: the operators' command (install, run, plan, status, doctor, gc, demo, verify,
why).

Subcommands live in their own modules, imported only when named: ``vnm
--help`` costs click alone, and the action scripts never import this package.
Errors are one line on stderr and a non-zero exit (2 for usage errors); every
listing has ``--json`` for scripts.
"""

import sys

import click

from vnmlib import __version__
from vnmlib.errors import VnmError

COMMANDS = {
    "install": "lay out the remotes tree for onehost sync",
    "run": "feed a VM to an action exactly as oned does",
    "plan": "what an action would change on this host, changing nothing",
    "status": "the VM NICs on this host: bridges, taps, chains, ipsets, OVS ports",
    "doctor": "check this host: kernel features, tools, configuration, permissions",
    "gc": "find (and with --apply remove) what VMs that are gone left behind",
    "demo": "a VM network lifecycle in a throwaway namespace",
    "verify": "a live self-test of a VM NIC's protection on this host",
    "why": "which rule, set or flow decides one packet of a VM NIC",
    "ovn": "join this host to OVN (the ovn driver), check its join",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        import importlib

        return importlib.import_module(f"{__name__}.{name}").command

    def format_commands(self, ctx, formatter):
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message="vnm %(version)s")
def cli():
    """OpenNebula virtual network drivers (vnm): the operators' command."""


def main(argv=None):
    """Entry point of ``vnm``: one line per error, exit codes for scripts."""
    try:
        cli.main(args=argv, prog_name="vnm", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        hint = f" (see vnm {exc.ctx.command_path.split(' ', 1)[1]} --help)" \
            if exc.ctx and " " in exc.ctx.command_path else " (see vnm --help)"
        click.echo(f"vnm: {exc.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"vnm: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.Abort:
        click.echo("vnm: aborted", err=True)
        return 1
    except VnmError as exc:
        click.echo(f"vnm: {exc}", err=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
