"""A real OpenSSH server inside a test namespace, with keys generated for the test.

The elastic driver's front-end reaches hosts the way oned does, with ``ssh -o
BatchMode=yes``; these tests give it a host to reach: ``sshd`` listening on
an address of the "host" namespace, root login with a fresh key only,
started in the foreground and stopped by pid.
"""

import os
import subprocess
import time

SSHD = "/usr/sbin/sshd"


class Sshd:
    def __init__(self, netns, address, workdir, env=None):
        self.workdir = str(workdir)
        self.key = os.path.join(self.workdir, "client_key")
        host_key = os.path.join(self.workdir, "host_key")
        for path in (self.key, host_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path],
                           check=True)
        authorized = os.path.join(self.workdir, "authorized_keys")
        with open(self.key + ".pub", encoding="ascii") as src, \
                open(authorized, "w", encoding="ascii") as dst:
            dst.write(src.read())
        config = os.path.join(self.workdir, "sshd_config")
        lines = [f"ListenAddress {address}", f"HostKey {host_key}",
                 f"AuthorizedKeysFile {authorized}", "PermitRootLogin prohibit-password",
                 "PasswordAuthentication no", "KbdInteractiveAuthentication no",
                 "UsePAM no", "StrictModes no",
                 f"PidFile {os.path.join(self.workdir, 'sshd.pid')}"]
        # the remote actions' environment (sshd clears the client's). HOME: a
        # clean one, so the session's bash reads no developer ~/.bashrc (this
        # machine's root puts a pyenv python3 first on PATH); a hypervisor's
        # login runs its system python3, and so do these sessions
        home = os.path.join(self.workdir, "home")
        os.makedirs(home, exist_ok=True)
        lines += [f"SetEnv HOME={home}"]
        lines += [f"SetEnv {k}={v}" for k, v in (env or {}).items()]
        with open(config, "w", encoding="ascii") as handle:
            handle.write("\n".join(lines) + "\n")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, SSHD, "-D", "-e", "-f", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.address = address
        self._wait(netns)

    def _wait(self, netns):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.proc.stderr.read().decode()}")
            done = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Htln",
                                   f"src {self.address}:22"], capture_output=True, text=True)
            if done.stdout.strip():
                return
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def client_options(self):
        """ssh arguments for the front-end: the key, and no known_hosts to keep."""
        return ["-i", self.key, "-o", "UserKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR"]

    def stop(self):
        self.proc.kill()
        self.proc.wait()
