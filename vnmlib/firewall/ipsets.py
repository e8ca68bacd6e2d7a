"""The NICs' ipsets: staged before the rules that use them, rolled back with them.

A set that exists already is refilled atomically: a temporary set is created
and filled, then ``swap``ped with the live one (rules reference sets by
index, and swap exchanges the contents behind the index). So a VM never sees
its spoofing set or a security group's networks empty, as a flush-and-refill
would show it.

The whole load is one ``ipset restore`` that makes every set and fills every
temporary *before* its first swap, so a failure while filling (a size limit,
say) has swapped nothing. After the swaps the temporaries hold the old
members: if the rules' commit then fails, swapping again puts them back
(:meth:`Staged.undo`), and only when the rules are in are they destroyed.
Sizes are checked against ``maxelem`` before anything runs.
"""

import re
import time

from vnmlib.host import process
from vnmlib.errors import InputError, VnmError

# A set whose last rule was just deleted can stay referenced for a moment:
# nf_tables releases match references from a work queue after the commit
# (the reference slept 0.5 s unconditionally, #6299). We retry instead, and
# only when the kernel reports the set busy.
RELEASE_TIMEOUT = 2.0
DEFAULT_MAXELEM = 65536  # ipset's own default for a set created without maxelem
_FAILED_LINE = re.compile(r"Error in line ([0-9]+):")
_PORT_RANGE = re.compile(r",[a-z0-9]+:([0-9]+)-([0-9]+)$")


def list_names():
    result = process.run([process.which("ipset"), "list", "-n"]).check("listing ipsets")
    return set(result.stdout.split())


def in_place(install):
    """Every set of ``install`` exists with its type and as many kernel entries as its
    members make; one ``ipset restore`` lists them all tersely (a missing one fails it)."""
    wanted = {ipset.name: ipset for nf in install for ipset in nf.sets.values()}
    if not wanted:
        return True
    result = process.run([process.which("ipset"), "restore"],
                         "".join(f"list {name} -t\n" for name in wanted))
    if not result.ok:
        return False
    found, name = {}, None
    for line in result.stdout.splitlines():
        key, _, value = line.partition(": ")
        if key == "Name":
            name = value.strip()
        elif name is not None and key in ("Type", "Number of entries"):
            found.setdefault(name, {})[key] = value.strip()
    return all(found.get(name) == {"Type": ipset.kind, "Number of entries":
                                   str(sum(_elements(m) for m in ipset.members))}
               for name, ipset in wanted.items())


def _temporary_name(nf, index):
    return f"{nf.chain}-t{index}"


def _elements(member):
    """Kernel elements a member takes: ``net,tcp:80-90`` is 11 (ipset expands port ranges)."""
    ports = _PORT_RANGE.search(member)
    return int(ports.group(2)) - int(ports.group(1)) + 1 if ports else 1


def check_sizes(install):
    """Every set fits its ``maxelem``, or one line naming the NIC and the set."""
    for nf in install:
        for ipset in nf.sets.values():
            limit = ipset.maxelem or DEFAULT_MAXELEM
            size = sum(_elements(member) for member in ipset.members)
            if size > limit:
                raise InputError(f"{nf.label}: ipset {ipset.name} would hold {size} entries, "
                                 f"more than its maxelem {limit} (ipset_maxelem)")


class Staged:
    """What :func:`stage` did: sets it created, and (temporary, live) pairs it swapped."""

    def __init__(self, created, swaps):
        self.created, self.swaps = created, swaps

    def undo(self, log):
        """Old members back in the live sets, the new sets and the temporaries gone."""
        if self.swaps:
            process.run([process.which("ipset"), "restore"],
                        "".join(f"swap {tmp} {live}\n" for tmp, live in self.swaps)).check(
                "putting the old ipset members back")
        destroy(self.created + [tmp for tmp, _ in self.swaps], log)

    def temporaries(self):
        return [tmp for tmp, _ in self.swaps]


def stage_script(install, existing):
    """(``ipset restore`` lines, sets created, (temporary, live) swaps)."""
    lines, created, swaps = [], [], []
    for nf in install:
        for index, ipset in enumerate(nf.sets.values()):
            adds = list(ipset.members)
            if ipset.name not in existing:
                lines.append(f"create {ipset.name} {ipset.create_args()}")
                lines += [f"add {ipset.name} {m}" for m in adds]
                created.append(ipset.name)
                continue
            tmp = _temporary_name(nf, index)
            if tmp in existing:  # left by an interrupted run
                lines.append(f"destroy {tmp}")
            lines.append(f"create {tmp} {ipset.create_args()}")
            lines += [f"add {tmp} {m}" for m in adds]
            swaps.append((tmp, ipset.name))
    lines += [f"swap {tmp} {live}" for tmp, live in swaps]
    return lines, created, swaps


def stage(install, existing, log):
    """Make and fill every wanted set, swap the refilled ones in; a :class:`Staged`.

    On failure nothing of it is left: swaps already done are swapped back, the
    sets made are destroyed, and the error names the failing line.
    """
    lines, created, swaps = stage_script(install, existing)
    staged = Staged(created, swaps)
    if not lines:
        return staged
    result = process.run([process.which("ipset"), "restore", "-exist"], "\n".join(lines) + "\n")
    if result.ok:
        return staged
    failed = _FAILED_LINE.search(result.stderr)
    first_swap = len(lines) - len(swaps)  # 0-based index of the first swap line
    done = max(0, int(failed.group(1)) - 1 - first_swap) if failed else len(swaps)
    partial = Staged(list(created), swaps[:done])
    partial.created += [tmp for tmp, _ in swaps[done:]]
    try:
        partial.undo(log)
    except VnmError as exc:
        raise VnmError(f"loading ipsets: ipset failed: {result.error_line()}; and {exc}") from None
    raise VnmError(f"loading ipsets: ipset failed: {result.error_line()} (nothing changed)")


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
