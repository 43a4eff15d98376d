"""User-facing errors: one line naming the file or option and what to do."""


class CCReIDError(Exception):
    """An error caused by user input (config, files, options).

    The CLI prints ``str(err)`` as a single line and exits with status 2; no traceback.
    """


def first_line(err: BaseException, limit: int = 120) -> str:
    """The first non-empty line of ``err``'s message, cut to ``limit`` characters, or its type
    name when the message is empty (one-line messages quote a cause with it)."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0].strip()[:limit] if lines else type(err).__name__
