"""A remotes tree laid out as ``vnm install`` does for ``onehost sync``."""

import os
import sys

from support.paths import REPO


def copy_tree(remotes, conf=None):
    """Lay the remotes out as ``vnm install`` does for ``onehost sync``; returns the ``vnm/`` tree.

    ``<remotes>/vnm/…`` with vnmlib (byte-compiled) inside it; ``<remotes>/etc/vnm/``
    holding ``conf`` as OpenNebulaNetwork.conf when given, no conf file (the
    built-in defaults) otherwise.
    """
    if REPO not in sys.path:  # the benches use this too, from bench/
        sys.path.insert(0, REPO)
    from vnmlib.ops.install import install

    remotes = str(remotes)
    install(remotes)
    path = os.path.join(remotes, "etc", "vnm", "OpenNebulaNetwork.conf")
    if conf is None:
        os.unlink(path)
    else:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(conf)
    return os.path.join(remotes, "vnm")
