"""vnm install: the remotes tree for onehost sync."""

import click

from vnmlib.cli.output import emit


@click.command(name="install")
@click.option("--remotes", default="/var/lib/one/remotes", show_default=True,
              type=click.Path(file_okay=False), help="oned's remotes directory")
@click.option("--dry-run", is_flag=True, help="show what would change, change nothing")
@click.option("--json", "as_json", is_flag=True, help="the changes as JSON")
def command(remotes, dry_run, as_json):
    """Lay out REMOTES/vnm/<driver>/<action> (vnmlib inside, byte-compiled) and
    REMOTES/etc/vnm/, keeping admins' hooks (<action>.d/) and an edited
    OpenNebulaNetwork.conf (its difference to the shipped one is shown)."""
    from vnmlib.ops import install

    try:
        rows = install.install_as_owner(remotes, dry_run)
    except install.InstallError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit(rows, (), True)
        return
    verb = "would" if dry_run else "did"
    emit([dict(r, detail=r["detail"].split("\n", 1)[0]) for r in rows],
         (("change", "change"), ("path", "path"), ("detail", "detail")), False,
         title=f"vnm install into {remotes} ({verb} change {sum(r['change'] != 'keep' for r in rows)}"
               f" paths):")
    for row in rows:
        if "\n" in row["detail"]:
            click.echo(row["detail"].split("\n", 1)[1].rstrip())
    if not dry_run:
        click.echo("\nNext:\n  - the privileged part of the actions runs as root through sudo: "
                   "on every host, the vnm-node package\n"
                   "    (/usr/sbin/vnm-action and its sudoers drop-in), or, with vnm-action "
                   "installed root-owned by hand,\n"
                   "    in /etc/sudoers.d/vnm:\n"
                   f"      {install.SUDOERS}\n"
                   "    (README 'Security')\n"
                   "  - copy the tree to the hosts:  onehost sync -f")
