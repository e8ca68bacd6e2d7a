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
# (the reference slept 0.5 s unconditionally, #6299). We retry instead, and
# only when the kernel reports the set busy.
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


def destroy(names, log):
    """Destroy ``names`` (no rule of ours uses them any more).

    A set the kernel still reports busy is retried with a growing pause,
    all of them within one deadline.
    """
    ipset_bin = process.which("ipset")
    remaining = sorted(names)
    deadline = time.monotonic() + RELEASE_TIMEOUT
    delay = 0.001
    while remaining:
        result = process.run([ipset_bin, "restore", "-exist"],
                             "".join(f"destroy {name}\n" for name in remaining))
        if result.ok:
            return
        # restore stops at the first busy set; the ones before it are gone
        remaining = sorted(set(remaining) & list_names())
        if time.monotonic() >= deadline:
            # the protection is complete; only unused sets are left behind
            log.info(f"ipsets {', '.join(remaining)} are no longer used by vnm but could not "
                     f"be destroyed: {result.error_line()}")
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
