"""The project's one error type: a message a user can act on, turned into one line and an exit
code by the CLI."""


class ImputeError(Exception):
    """A problem with the user's input or environment. The message says what is wrong and how
    to fix it, on one line."""

    exit_code = 1  # bad data, a refused model, a file in the way

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class OptionError(ImputeError):
    """A bad command line: an option out of its range, options that contradict each other, a
    preset that does not exist. Exit code 2, as for click's own usage errors."""

    exit_code = 2


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with what it left behind and what to do next, for the CLI's line."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), to quote
    a library's error inside a one-line ImputeError."""
    text = str(e)
    return text.splitlines()[0] if text.strip() else type(e).__name__
