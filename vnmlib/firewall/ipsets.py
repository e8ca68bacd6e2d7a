"""The NICs' ipsets: loaded before the rules that use them, destroyed after.

A set that exists already is refilled atomically: a temporary set is created
and filled, then ``swap``ped with the live one (rules reference sets by
index, and swap exchanges the contents behind the index), then destroyed.
So a VM never sees its spoofing set or a security group's networks empty,
as a flush-and-refill would show it. All of it is one ``ipset restore``.
"""

import time

from .. import process

# A set whose last rule was just deleted can stay referenced for a moment:
# nf_tables releases match references from a work queue after the commit
# (the reference slept 0.5 s unconditionally, #6299). We wait for the
# reference count instead, and only when the kernel reports the set busy.
RELEASE_TIMEOUT = 2.0


def list_names():
    result = process.run([process.which("ipset"), "list", "-n"]).check("listing ipsets")
    return set(result.stdout.split())


def _temporary_name(nf, index):
    return f"{nf.chain}-t{index}"


def load_script(install, existing):
    """``ipset restore`` lines that make every wanted set exist with exactly its members."""
    lines = []
    for nf in install:
        for index, ipset in enumerate(nf.sets.values()):
            adds = list(ipset.members)
            if ipset.name not in existing:
                lines.append(f"create {ipset.name} {ipset.create_args()}")
                lines += [f"add {ipset.name} {m}" for m in adds]
                continue
            tmp = _temporary_name(nf, index)
            if tmp in existing:  # left by an interrupted run
                lines.append(f"destroy {tmp}")
            lines.append(f"create {tmp} {ipset.create_args()}")
            lines += [f"add {tmp} {m}" for m in adds]
            lines += [f"swap {tmp} {ipset.name}", f"destroy {tmp}"]
    return lines


def load(install, existing):
    lines = load_script(install, existing)
    if lines:
        process.run([process.which("ipset"), "restore", "-exist"],
                    "\n".join(lines) + "\n").check("loading ipsets")


def _references(ipset_bin, name):
    result = process.run([ipset_bin, "list", "-t", name])
    if not result.ok:
        return 0  # gone already
    for line in result.stdout.splitlines():
        if line.startswith("References:"):
            return int(line.split(":", 1)[1])
    return 0


def destroy(names, log):
    """Destroy ``names`` (no rule of ours uses them any more)."""
    if not names:
        return
    ipset_bin = process.which("ipset")
    script = "".join(f"destroy {name}\n" for name in names)
    if process.run([ipset_bin, "restore", "-exist"], script).ok:
        return
    for name in names:  # one was still busy; the ones before it are gone
        if name not in list_names():
            continue
        deadline = time.monotonic() + RELEASE_TIMEOUT
        delay = 0.001
        while _references(ipset_bin, name) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        result = process.run([ipset_bin, "destroy", name])
        if not result.ok:
            # the protection is complete; only an unused set is left behind
            log.info(f"ipset {name} is no longer used by vnm but could not be destroyed: "
                     f"{result.error_line()}")
