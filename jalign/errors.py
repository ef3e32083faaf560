"""User-facing errors.

Every error a person can cause (a missing file, a bad config value, a malformed record) is a
`JalignError` whose message names *what* was wrong, *where*, and *what is allowed*. The CLI
prints these as one line, without a traceback from deep inside JAX.
"""


class JalignError(Exception):
    """An error caused by user input; its message is meant to be read by a person."""
