"""How a test judges an action's outcome: success, or exactly one ERROR line oned can show."""


def assert_ok(done):
    assert done.returncode == 0, done.stderr.decode()
    return done


def assert_one_error(done, *needles):
    """Failure with exactly one ERROR line that mentions every needle."""
    err = done.stderr.decode()
    assert done.returncode != 0, err
    errors = [line for line in err.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert "Traceback" not in err
    # OpenNebula's driver layer keeps the unprefixed stderr lines as the VM's
    # ERROR text (DriverExecHelper#get_info_from_execution): the reason is there
    reason = errors[0].split(": ", 2)[2]
    assert reason in failure_text(err), err
    return errors[0]


def failure_text(stderr):
    """What oned stores in the VM's ERROR attribute: the stderr lines without a log prefix."""
    return "\n".join(line for line in stderr.splitlines()
                     if not line.startswith(("ERROR:", "INFO:", "WARN:", "DEBUG:")))
