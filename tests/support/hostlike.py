"""Running an action in a test's network namespace the way a hypervisor runs it: in a mount
namespace whose network namespaces (``ip netns add``) are the machine's.

``ip netns exec`` puts its command in a private mount namespace where every
mount is a slave: a namespace named there (TProxy's ``one_tproxy_<BR>``)
would exist for that action only. Here the action's mount namespace keeps
/run/netns in the machine's peer group, so the names it makes are seen by
later actions and by the test; /sys (remounted for the test's network
namespace, as ip netns exec does) and /etc/hosts (the test's own, for names
the action or its daemon resolve) are made private first, so neither
reaches the machine's mounts.
"""

import os
import subprocess

_ENTER = r"""
import os, subprocess, sys
hosts, netns, argv = sys.argv[1], sys.argv[2], sys.argv[3:]

def out(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()

# what we mount on must not propagate anywhere: the mounts holding /sys and /etc/hosts
for path in ("/sys", "/etc/hosts"):
    out("mount", "--make-private", out("findmnt", "-n", "-o", "TARGET", "-T", path))
if out("findmnt", "-n", "-o", "PROPAGATION", "/run/netns") != "shared":
    sys.exit("/run/netns is not a shared mount: names made here would not outlive the action")
out("mount", "--bind", hosts, "/etc/hosts")
enter = ["nsenter", f"--net=/run/netns/{netns}", "--"]
out(*enter, "mount", "-t", "sysfs", "sysfs", "/sys")  # this network namespace's links
os.execvp(enter[0], enter + argv)
"""


def run_action(ns, hosts, argv, stdin=b"", env=None):
    """``argv`` (the action) in namespace ``ns`` with ``hosts`` as /etc/hosts; the finished run."""
    full_env = dict(os.environ, VNM_RUN_DIR=ns.run_dir)
    full_env.update(env or {})
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "unchanged", "python3", "-c", _ENTER,
         hosts, ns.name, *argv],
        input=stdin, capture_output=True, env=full_env, check=False)
