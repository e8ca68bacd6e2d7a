"""nft transactions and listings: libnftables in-process, or ``nft -f -``.

Debian's python3-nftables binds libnftables: a listing or a transaction costs
no process (an ``nft`` run is 5–10 ms of a 50 ms action). Without the binding
the host's ``nft`` runs the same text. The wire guard of every backend and the
nft backend (:mod:`.backend_nft`) share this one context; kept apart from the
backend, which imports its renderer and JSON reader, so the guard needs only this.
"""

from vnmlib.host import process

_CONTEXT = []  # the one libnftables context of this process, once made


def binding():
    """libnftables through python3-nftables, or None (no binding, or no library)."""
    if not _CONTEXT:
        try:
            import nftables

            _CONTEXT.append(nftables.Nftables())
        except (ImportError, OSError):  # no binding, or no library behind it
            _CONTEXT.append(None)
    return _CONTEXT[0]


def run(script, as_json=False, terse=False, dry_run=False):
    """(ok, output, error) of ``script``: one nft transaction (or listing).

    The context's output flags are set on every call: the one context serves
    callers wanting text and callers wanting JSON."""
    nft = binding()
    if nft is not None:
        nft.set_json_output(as_json)
        nft.set_terse_output(terse)
        nft.set_dry_run(dry_run)
        rc, out, err = nft.cmd(script)
        return rc == 0, out, err
    argv = [process.which("nft"), *(["-j"] if as_json else []), *(["-t"] if terse else []),
            *(["-c"] if dry_run else []), "-f", "-"]
    done = process.run(argv, script)
    return done.ok, done.stdout, done.stderr
