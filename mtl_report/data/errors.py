"""The one exception type the data layer raises for problems with the user's data.

The CLI turns a :class:`DataError` into a one-line message and a non-zero exit; anything
else is a bug and keeps its traceback (shown with ``--debug``).
"""


class DataError(Exception):
    """Input data that cannot be used as given: a missing file, column or value.

    The message names the file and what is wrong with it, in one line.
    """
