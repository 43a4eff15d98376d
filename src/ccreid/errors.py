"""User-facing errors: one line naming the file or option and what to do."""


class CCReIDError(Exception):
    """An error caused by user input (config, files, options).

    The CLI prints ``str(err)`` as a single line and exits with status 2; no traceback.
    """
