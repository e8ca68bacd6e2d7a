"""Running a command and ending a process a test started."""

import subprocess


def sh(*args, check=True, input=None):
    """Run a command (argv list), return stdout as text."""
    done = subprocess.run(list(args), input=input, capture_output=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}): {done.stderr.decode()}")
    return done.stdout.decode()


def stop(proc):
    """End a process this test started (by pid), and reap it."""
    proc.kill()
    proc.wait()
