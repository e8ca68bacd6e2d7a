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
