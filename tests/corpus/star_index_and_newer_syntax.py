from typing import Generic, TypeVarTuple

Ts = TypeVarTuple("Ts")


class Array(Generic[*Ts]):
    pass


def args(*values: *Ts) -> tuple[*Ts]:
    return values


def main():
    data = {(1, 2): "pair"}
    keys = (1, 2)
    return [data[*keys], args(1, "a")]
