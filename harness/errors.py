"""User-facing errors: one line that says what is wrong and how to fix it."""


class HarnessError(Exception):
    """Bad input or a failed precondition. Command lines print ``error: <message>`` and exit 2."""


class DataError(HarnessError):
    """A dataset file is missing, unreadable, unsafe or does not follow the protocol."""
