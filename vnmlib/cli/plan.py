"""vnm plan: what an action would change on this host, computed by the driver's own code."""

import os

import click

from vnmlib.cli.run import action_arguments, default_tree, vm_stdin

# front-end actions call a provider and another host: no local plan to show
FRONT_END = {("elastic", "post"), ("elastic", "clean")}


def plan_action(driver, action, args, stdin, tree):
    """The changes (lines, as the action would log them) of DRIVER ACTION on this host."""
    from vnmlib.host import plan
    from vnmlib.contract.context import REQUIRED_ARGS, Context, check_argv, handler_of
    from vnmlib.errors import VnmError
    from vnmlib.log import Log

    if (driver, action) in FRONT_END:
        raise VnmError(f"{driver} {action} runs on the front-end (provider, then ssh): plan its "
                       f"host side, {driver} remote_{action}")
    if action not in REQUIRED_ARGS:
        raise VnmError(f"unknown action {action!r}")
    check_argv(action, list(args))
    handler = handler_of(driver, action)
    if os.geteuid() != 0:
        raise VnmError("plan reads the kernel's and iptables' state: run it as root")
    with plan.recording() as lines:
        handler(Context(driver, action, list(args), stdin, tree, plan.RecordingLog(Log(action))))
    return lines


@click.command(name="plan", context_settings={"ignore_unknown_options": True})
@action_arguments
@click.option("--json", "as_json", is_flag=True, help="the changes as a JSON list")
def command(driver, action, args, vm_file, tree, as_json):
    """What DRIVER ACTION ARGS would change here (links, ports, VLANs, rules and
    ipsets, OVS ports and flows), from the current state; nothing is changed and
    no hook runs. The lines are those the action logs when it runs.

    Example: vnm plan bridge pre --vm vm7.xml"""
    import json

    lines = plan_action(driver, action, args, vm_stdin(vm_file), tree or default_tree())
    if as_json:
        click.echo(json.dumps(lines, indent=2))
    elif not lines:
        click.echo("nothing to change")
    else:
        click.echo("\n".join(lines))
