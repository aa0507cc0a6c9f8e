import math
import operator
from functools import reduce, partial

CACHE = {}
square = lambda v: v * v
compose = lambda *fns: lambda x: reduce(lambda acc, f: f(acc), fns, x)
add3 = partial(operator.add, 3)


def memo(fn):
    def inner(n):
        if n not in CACHE:
            CACHE[n] = fn(n)
        return CACHE[n]
    return inner


@memo
def slow(n):
    return math.factorial(n)


def main():
    return [compose(square, add3)(2), slow(20), sorted({3, 1, 2}, key=lambda v: -v)]
