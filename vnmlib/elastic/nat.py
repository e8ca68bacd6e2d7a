"""A NIC's NAT rules in the nat table: its own chains, replaced in one transaction.

``one-<vm>-<nic>-dnat`` is jumped to from PREROUTING (traffic arriving for the
external address) and OUTPUT (the host itself connecting to it);
``one-<vm>-<nic>-snat`` from POSTROUTING. ``iptables-restore -n`` declares
(creates or flushes) and fills them and adds the missing jumps at once, so a
re-run converges and a removal takes chains and jumps in one step.
"""

from vnmlib.host import process
from vnmlib.host.locks import FirewallLock

JUMPS = {"dnat": ("PREROUTING", "OUTPUT"), "snat": ("POSTROUTING",)}
HOOK_CHAINS = ("PREROUTING", "OUTPUT", "POSTROUTING")


def chain(base, kind):
    return f"{base}-{kind}"


def read_jumps():
    """{(hook chain, target)} of the nat table's ``-j`` rules in the hook chains."""
    iptables = process.which("iptables")
    commands = [([iptables, "-w", "-t", "nat", "-S", hook], None) for hook in HOOK_CHAINS]
    jumps = set()
    for hook, result in zip(HOOK_CHAINS, process.run_all(commands)):
        result.check(f"reading the nat table's {hook} chain")
        for line in result.stdout.splitlines():
            tokens = line.split()
            if tokens[:2] == ["-A", hook] and tokens[2:3] == ["-j"] and len(tokens) == 4:
                jumps.add((hook, tokens[3]))
    return jumps


def render(base, rules, jumps):
    """Restore text making ``base``'s chains hold ``rules`` ({kind: [tokens]}, empty: none)."""
    lines = ["*nat"]
    for kind, hooks in JUMPS.items():
        name = chain(base, kind)
        lines.append(f":{name} - [0:0]")  # declaring creates or flushes it
        wanted = rules.get(kind) or []
        lines += [" ".join(("-A", name, *tokens)) for tokens in wanted]
        for hook in hooks:
            present = (hook, name) in jumps
            if wanted and not present:
                lines.append(f"-A {hook} -j {name}")
            elif not wanted and present:
                lines.append(f"-D {hook} -j {name}")
        if not wanted:
            lines.append(f"-X {name}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def replace(base, rules):
    """Make the NIC's nat chains hold ``rules``; no rules and no chains: nothing runs."""
    with FirewallLock():
        jumps = read_jumps()
        if not any(rules.values()) and not any(t.startswith(f"{base}-") for _, t in jumps):
            return False
        text = render(base, rules, jumps)
        process.run([process.which("iptables-restore"), "-w", "-n"], text).check(
            f"{base}: applying the nat rules")
    return True
