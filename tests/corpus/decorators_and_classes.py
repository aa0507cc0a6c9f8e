import functools
from dataclasses import dataclass, field
from typing import ClassVar


def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float = 0.0
    tags: list[str] = field(default_factory=list)
    ORIGIN: ClassVar["Point"]

    @property
    def norm(self) -> float:
        return (self.x ** 2 + self.y ** 2) ** 0.5

    @classmethod
    def parse(cls, text: str) -> "Point":
        x, _, y = text.partition(",")
        return cls(float(x), float(y))

    @staticmethod
    def zero() -> "Point":
        return Point(0, 0)


class Meta(type):
    def __new__(mcs, name, bases, ns, **kw):
        return super().__new__(mcs, name, bases, ns)


class Base(metaclass=Meta, flag=True):
    __slots__ = ("a",)


@logged
def main():
    return Point.parse("3,4").norm
