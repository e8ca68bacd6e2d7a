"""The one exception type the action runtime turns into an ``ERROR:`` line."""


class VnmError(Exception):
    """A failure to report to oned as one line, with a non-zero exit code.

    The message must name what failed (NIC, attribute, device) so that an
    operator can act on it without reading a traceback.
    """

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


class InputError(VnmError):
    """The VM description or its attributes are unusable: nothing was changed."""


SHOWN_MAX = 40


def shown(value):
    """``value`` as an error line quotes it: repr, cut after 40 characters.

    Attribute values are the user's: a megabyte-long one must not become a
    megabyte-long ERROR line (oned stores it in the VM's log).
    """
    text = str(value)
    if len(text) <= SHOWN_MAX:
        return repr(text)
    return f"{text[:SHOWN_MAX]!r}… ({len(text)} characters)"


class OutcomeUnknown(VnmError):
    """A tool was stopped (timed out) after it may already have made its change.

    :func:`vnmlib.host.steps.apply` then undoes the failed step too, not only the
    ones before it, so a timeout leaves nothing half-committed.
    """
