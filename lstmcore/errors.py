"""lstmcore's typed errors.

Both subclass ``ValueError``, so code written against earlier versions (``except ValueError``)
keeps working; new code can tell a bad option from bad data.
"""


class ConfigError(ValueError):
    """An option, argument or saved configuration that lstmcore cannot accept.

    The message names the option, the value given and what is accepted. Raised before any
    step runs and before anything is written.
    """


class DataError(ValueError):
    """Data that lstmcore cannot train or diagnose on: its shape, its values or its splits.

    The message names the data (``data``, ``validation_data``, a CSV column), what was wrong
    and what is accepted. Raised before any step runs and before anything is written.
    """
