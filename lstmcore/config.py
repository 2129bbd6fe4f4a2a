"""Config checking in one place: numbers, choices and registries.

Every option lstmcore accepts is checked by one of these functions before any work or any
write. NumPy scalars are accepted wherever the Python type is (``np.int64(10)`` is an
integer, ``np.float32(1e-3)`` a number); booleans are never numbers. Errors are
:class:`lstmcore.errors.ConfigError` (a ``ValueError``) naming the option, the value given and
what is accepted.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable

from lstmcore.errors import ConfigError


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(
    name: str,
    value,
    *,
    minimum: int | None = 1,
    maximum: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """``value`` as a Python int, checked to lie in ``[minimum, maximum]``.

    ``minimum=1`` (the default) makes it a positive integer; ``minimum=None`` any integer.
    """
    if value is None and allow_none:
        return None
    if not _is_integer(value):
        raise ConfigError(
            f"{name} must be {_describe_int(minimum, maximum, allow_none)}; got {value!r}"
        )
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(
            f"{name} must be {_describe_int(minimum, maximum, allow_none)}; got {value!r}"
        )
    return value


def number(
    name: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    allow_none: bool = False,
) -> float | None:
    """``value`` as a finite Python float, checked against the bounds (inclusive).

    ``positive=True`` requires ``value > 0``.
    """
    if value is None and allow_none:
        return None
    what = _describe_number(minimum, maximum, positive, allow_none)
    if not _is_real(value):
        raise ConfigError(f"{name} must be {what}; got {value!r}")
    value = float(value)
    if (
        not math.isfinite(value)
        or (positive and value <= 0)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        raise ConfigError(f"{name} must be {what}; got {value!r}")
    return value


def seed(name: str, value) -> int | None:
    """None, or an integer that fits in 64 bits."""
    if value is None:
        return None
    if not _is_integer(value) or not -(2**63) <= int(value) < 2**63:
        raise ConfigError(f"{name} must be None or an integer that fits in 64 bits; got {value!r}")
    return int(value)


def choice(name: str, value, choices: Iterable[str], *, allow_none: bool = False) -> str | None:
    """``value`` lower-cased, checked to be one of ``choices`` (case-insensitive)."""
    choices = tuple(choices)
    if value is None and allow_none:
        return None
    if isinstance(value, str) and value.lower() in {c.lower() for c in choices}:
        return value.lower()
    accepted = ", ".join(repr(c) for c in choices) + (" or None" if allow_none else "")
    raise ConfigError(f"{name} must be one of {accepted}; got {value!r}")


class Registry:
    """Names to factories, open to registration from outside the package.

    ``registry.register("name")(factory)`` (or as a decorator) adds an entry;
    ``registry.get(name)`` looks one up, case-insensitively, and raises a ConfigError listing
    what is registered. The CLI's choices are ``registry.names()``.
    """

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, Callable] = {}

    def register(self, name: str, *, override: bool = False):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.what} name must be a non-empty string; got {name!r}")
        key = name.lower()

        def add(factory):
            if key in self._entries and not override and self._entries[key] is not factory:
                raise ConfigError(
                    f"{self.what} {name!r} is already registered; pass override=True to replace it"
                )
            self._entries[key] = factory
            return factory

        return add

    def get(self, name: str, *, option: str | None = None) -> Callable:
        key = choice(option or self.what, name, self.names())
        return self._entries[key]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name.lower() in self._entries


def _describe_int(minimum, maximum, allow_none) -> str:
    if minimum == 1 and maximum is None:
        text = "a positive integer"
    elif minimum == 0 and maximum is None:
        text = "an integer >= 0"
    elif minimum is None and maximum is None:
        text = "an integer"
    else:
        low = "" if minimum is None else f">= {minimum}"
        high = "" if maximum is None else f"<= {maximum}"
        text = "an integer " + " and ".join(t for t in (low, high) if t)
    return text + (" or None" if allow_none else "")


def _describe_number(minimum, maximum, positive, allow_none) -> str:
    parts = []
    if positive:
        parts.append("> 0")
    if minimum is not None:
        parts.append(f">= {minimum}")
    if maximum is not None:
        parts.append(f"<= {maximum}")
    text = "a finite number" + (" " + " and ".join(parts) if parts else "")
    return text + (" or None" if allow_none else "")
