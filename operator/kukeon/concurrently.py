"""Awaiting independent steps at once, for every layer (a controller's, a teardown's).

Every step runs to its end before these return (nothing is left running behind a
failure), then the first step's error is raised: the one that came first when the steps
ran one after the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar, cast

A = TypeVar("A")
B = TypeVar("B")


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both results, once both steps ended."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(A, results[0]), cast(B, results[1])


async def all_of(*steps: Awaitable[A]) -> list[A]:
    """Every step's result, in order, once all of them ended."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(list[A], results)


async def run_all(steps: Iterable[Awaitable[None]]) -> None:
    """The steps at once, for their effect."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def nothing() -> None:
    """A step that does nothing (a branch with no work to run beside another)."""
    return None
