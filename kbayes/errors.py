"""Exceptions raised by kbayes. Both are ``ValueError`` so generic handlers still work."""


class DataError(ValueError):
    """Bad input data: the message names the table, column, rows and what was expected."""


class SpecError(ValueError):
    """Bad model specification: the message names the offending key(s)."""
