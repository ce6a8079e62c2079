"""
What every ``piccolo conference`` command shares: how it fails. The library
raises a :class:`~conference.errors.ConferenceError` whose message says what
to do; a command decorated with :func:`exit_on_error` prints that message as
one line on stderr and exits with status 1, instead of a traceback.

Example::

    @exit_on_error
    async def seed(force: bool = False) -> None:
        result = await seed_database(force=force)  # may raise ProductionDatabaseError
        print(result.table())
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, ParamSpec, TypeVar, cast, overload

from conference.errors import ConferenceError

P = ParamSpec("P")
R = TypeVar("R")

#: What starts the line a failing command prints.
ERROR_PREFIX = "conference: error: "


def fail(error: BaseException | str) -> NoReturn:
    """Print ``error`` as a command's one-line error and exit with status 1."""
    print(f"{ERROR_PREFIX}{error}", file=sys.stderr)
    sys.exit(1)


def parse_moment(option: str, value: str) -> datetime | None:
    """
    The time an option names in ISO 8601 (UTC when it names no zone), or
    None when it is empty; a ValueError that names the option otherwise.
    """
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{option} must be an ISO 8601 time such as 2026-09-01T00:00:00+00:00, got {value!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Exception classes are callables too: the overload for them comes first,
# and it does overlap the other one (for mypy; at run time isinstance tells).
@overload
def exit_on_error(  # type: ignore[overload-overlap]
    *errors: type[Exception],
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


@overload
def exit_on_error(command: Callable[P, R], /) -> Callable[P, R]: ...


def exit_on_error(*args: Any) -> Any:
    """
    Turn the errors a command expects into one line on stderr and exit
    status 1: :class:`~conference.errors.ConferenceError` always, and the
    exception types given (``@exit_on_error(ValueError)``) too. Anything
    else is a bug and keeps its traceback.

    Works on plain and ``async`` commands; the signature and docstring,
    which ``targ`` turns into the command's arguments and help, stay as
    they are.
    """
    if len(args) == 1 and callable(args[0]) and not isinstance(args[0], type):
        return _decorate(args[0], (ConferenceError,))
    errors = (ConferenceError, *args)
    return lambda command: _decorate(command, errors)


def _decorate(command: Callable[P, R], errors: tuple[type[Exception], ...]) -> Callable[P, R]:
    wrapper: Any
    if inspect.iscoroutinefunction(command):

        async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await command(*args, **kwargs)
            except errors as error:
                fail(error)

        wrapper = run_async
    else:

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except errors as error:
                fail(error)

        wrapper = run
    functools.update_wrapper(wrapper, command)
    # targ maps positional arguments with inspect.getfullargspec(), which
    # ignores __wrapped__ but honours __signature__.
    wrapper.__signature__ = inspect.signature(command)
    return cast(Callable[P, R], wrapper)
