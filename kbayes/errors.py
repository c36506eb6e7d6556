"""Exceptions raised by kbayes. All are ``ValueError`` so generic handlers still work."""


class DataError(ValueError):
    """Bad input data: the message names the table, column, rows and what was expected."""


class SpecError(ValueError):
    """Bad model specification: the message names the offending key(s)."""


class ConfigError(ValueError):
    """Bad settings (a design, truth or power-study file): the message names the key."""
