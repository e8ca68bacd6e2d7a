"""Tables for people, JSON for scripts."""

import json

import click


def emit(rows, columns, as_json, title=None):
    """``rows`` (dicts) as a table of ``columns`` [(key, heading)], or as JSON."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    if title:
        click.echo(title)
    if not rows:
        click.echo("  (none)")
        return
    cells = [[str(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [max(len(heading), *(len(c[i]) for c in cells)) for i, (_, heading) in
              enumerate(columns)]
    click.echo("  ".join(h.ljust(w) for (_, h), w in zip(columns, widths)).rstrip())
    for line in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
