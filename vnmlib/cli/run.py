"""vnm run: feed a VM to an action exactly as oned does."""

import os
import sys

import click


def vm_stdin(path):
    """The bytes oned would send: a VM XML file is base64-encoded, a base64 one kept."""
    import base64

    with open(path, "rb") as handle:
        data = handle.read()
    return base64.b64encode(data.strip()) if data.lstrip().startswith(b"<") else data


def default_tree():
    """The host's synced tree, else the front-end's remotes, else this checkout."""
    for tree in ("/var/tmp/one/vnm", "/var/lib/one/remotes/vnm"):
        if os.path.isdir(os.path.join(tree, "bridge")):
            return tree
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "vnm")


TREE = click.option("--tree", type=click.Path(exists=True, file_okay=False),
                    help="the vnm/ tree (default: /var/tmp/one/vnm, /var/lib/one/remotes/vnm, "
                         "or this checkout's)")
VM = click.option("--vm", "vm_file", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="the VM: XML (as in onevm show -x or the fixtures) or base64")


def action_arguments(command):
    """DRIVER ACTION [ARGS]... --vm FILE [--tree DIR]: how run and plan name an action."""
    for decorator in reversed((click.argument("driver"), click.argument("action"),
                               click.argument("args", nargs=-1), VM, TREE)):
        command = decorator(command)
    return command


@click.command(name="run", context_settings={"ignore_unknown_options": True})
@action_arguments
@click.option("--python", "python", type=click.Path(exists=True, dir_okay=False),
              help="run the action with this interpreter (default: its #! line, as oned)")
def command(driver, action, args, vm_file, tree, python):
    """Run TREE/DRIVER/ACTION ARGS with the VM on stdin, as oned would; its exit code.

    Example: vnm run fw post one-7 node1 --vm vm7.xml"""
    import subprocess

    tree = tree or default_tree()
    script = os.path.join(tree, driver, action)
    if not os.path.isfile(script):
        raise click.ClickException(f"{script} does not exist (driver {driver!r}, action "
                                   f"{action!r})")
    argv = ([python] if python else []) + [script, *args]
    done = subprocess.run(argv, input=vm_stdin(vm_file), check=False)
    sys.exit(done.returncode)
