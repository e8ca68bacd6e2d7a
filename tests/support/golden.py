"""Reading ../shared/golden: the reference drivers' exit codes and kernel state per step."""

import os
import re

from support.paths import GOLDEN


def rc(scenario, step):
    with open(os.path.join(GOLDEN, scenario, f"{step}.rc"), encoding="ascii") as handle:
        return int(handle.read().strip())


def argv(scenario, step):
    """``bridge/post one-7 node1`` -> ("bridge", "post", ["one-7", "node1"])."""
    with open(os.path.join(GOLDEN, scenario, f"{step}.argv"), encoding="ascii") as handle:
        words = handle.read().split()
    driver, action = words[0].split("/")
    return driver, action, words[1:]


def state(scenario, name):
    """(set of link names, {port: master}) from an ``NN-after-<step>.state`` file."""
    sections, current = {}, None
    with open(os.path.join(GOLDEN, scenario, name), encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("## "):
                current = sections.setdefault(line[3:].strip(), [])
            elif current is not None and line.strip():
                current.append(line.rstrip("\n"))
    links = {line.split()[0].split("@")[0] for line in sections.get("ip -d -br link", [])}
    masters = {}
    for line in sections.get("bridge link", []):
        match = re.match(r"^(\S+?)(@\S+)?: .* master (\S+)", line)
        masters[match.group(1)] = match.group(3)
    return links, masters


def restrict(links, masters, names):
    return links & names, {p: m for p, m in masters.items() if p in names}


def section(scenario, name, title):
    """The lines of one ``## <title>`` section of a state file (e.g. ``iptables -S``)."""
    lines, current = [], False
    with open(os.path.join(GOLDEN, scenario, name), encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("## "):
                current = line[3:].strip() == title
            elif current and line.strip():
                lines.append(line.rstrip("\n"))
    return lines


def commands(scenario, step, prefix):
    """Lines of ``<step>.cmds`` starting with ``prefix`` (e.g. ``ipset add -exist``)."""
    with open(os.path.join(GOLDEN, scenario, f"{step}.cmds"), encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle if line.startswith(prefix)]


def chain_rules(lines, chain):
    """``-A <chain> …`` lines of an ``iptables -S`` listing, as token tuples."""
    return [tuple(line.split()[2:]) for line in lines if line.startswith(f"-A {chain} ")]


def routed_out_jump(tokens):
    """A reference routed-mode ``-o`` jump as vnm makes it (README, differences):
    the tap alone, without ``--physdev-is-bridged``, so routed traffic is filtered too."""
    return tuple(t for t in tokens if t != "--physdev-is-bridged")


# vnm's deliberate additions to the reference's rules (README, "Isolation at the
# wire"): one connlimit rule per NIC -o chain, right after its conntrack RETURN
# (:conntrack_limit:, shipped default 16384). The reference has no such rule, so
# the comparisons take them out first (without_guards) and check them apart:
# exactly one in every -o chain vnm made, none anywhere else.
CONNLIMIT = re.compile(r"^-A (one-\d+-\d+-o) -m connlimit --connlimit-above (\d+) "
                       r"--connlimit-mask 0 --connlimit-saddr -j DROP$")


def without_guards(lines, limit=16384):
    """``iptables -S`` lines minus vnm's connlimit rules, after checking them."""
    out_chains = [line.split()[1] for line in lines
                  if re.match(r"^-N one-\d+-\d+-o$", line)]
    guards = [CONNLIMIT.match(line) for line in lines]
    assert sorted(m.group(1) for m in guards if m) == sorted(out_chains), lines
    assert all(int(m.group(2)) == limit for m in guards if m)
    # right after the chain's conntrack RETURN
    for index, match in enumerate(guards):
        if match:
            assert lines[index - 1] == (f"-A {match.group(1)} -m state --state "
                                        "RELATED,ESTABLISHED -j RETURN"), lines[index - 1]
    return [line for line, match in zip(lines, guards) if not match]
