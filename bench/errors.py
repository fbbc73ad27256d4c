"""User errors: one line that says what was wrong and how to fix it (the CLI exits with status 2)."""


class UserError(Exception):
    """Bad input from the person running the benchmark, as opposed to a bug (which keeps its traceback)."""
