from __future__ import annotations
from typing import Callable, Generic, Optional, TypeVar, Union, overload, Protocol, TypedDict, Literal

T = TypeVar("T")
K = TypeVar("K", bound="Comparable")


class Comparable(Protocol):
    def __lt__(self, other: object, /) -> bool: ...


class Box(Generic[T]):
    def __init__(self, value: T) -> None:
        self.value: T = value

    def map(self, fn: Callable[[T], T]) -> Box[T]:
        return Box(fn(self.value))


class Config(TypedDict, total=False):
    mode: Literal["fast", "slow"]
    retries: int


@overload
def first(xs: list[int]) -> int: ...
@overload
def first(xs: list[str]) -> str: ...
def first(xs):
    return xs[0]


def keyword_only(a: int, /, b: int, *, c: int = 3, **rest: object) -> dict[str, int | None]:
    return {"a": a, "b": b, "c": c}


x: int
y: Optional[Union[int, str]] = None


def main() -> dict[str, object]:
    return {"box": Box(2).map(lambda v: v * 21).value, "kw": keyword_only(1, 2, c=4)}
