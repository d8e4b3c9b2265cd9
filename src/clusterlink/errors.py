"""One root for the failures a user sees, and the exit code each one tells.

Every error a command may report derives from `ClusterlinkError`; its `exit_code` says what
happened to the user's world:
- `EXIT_BAD_INPUT` (2): the input was wrong or unusable; nothing was changed;
- `EXIT_FAILURE` (1): the operation ran and failed; it may be partly applied, and the message
  says what was done.
The CLI maps them in one place (`cli.common.user_errors`); nothing else picks exit codes.
"""

from __future__ import annotations

EXIT_FAILURE = 1  # the operation ran and failed (not found, a check failed, partly applied)
EXIT_BAD_INPUT = 2  # the input was wrong; nothing was changed


class ClusterlinkError(Exception):
    """A failure for a user: the message is one line naming the object and what is wrong."""

    exit_code: int = EXIT_FAILURE


class BadInput(ClusterlinkError):
    """Wrong or unusable input, found before anything was changed."""

    exit_code = EXIT_BAD_INPUT


class Failed(ClusterlinkError):
    """The operation ran and failed; it may be partly applied (the message says how far)."""

    exit_code = EXIT_FAILURE


def partly_applied(exc: ClusterlinkError, done: list[str]) -> ClusterlinkError:
    """`exc`, told truthfully: once something was changed, no failure means "nothing changed"."""
    if not done or exc.exit_code != EXIT_BAD_INPUT:
        return exc
    return Failed(f"{exc} (after {len(done)} step(s) were done, the last: {done[-1]})")
