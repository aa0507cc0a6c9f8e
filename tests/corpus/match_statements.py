from dataclasses import dataclass


@dataclass
class Click:
    x: int
    y: int


def describe(event):
    match event:
        case {"type": "key", "key": str(k)} if len(k) == 1:
            return f"key {k}"
        case Click(x=0, y=0):
            return "origin"
        case Click(x=x, y=y) if x == y:
            return "diagonal"
        case [first, *rest]:
            return f"list starting {first} with {len(rest)} more"
        case (1 | 2 | 3) as small:
            return f"small {small}"
        case str() | bytes():
            return "text"
        case None:
            return "nothing"
        case {"nested": {"deep": [_, _, *_]}}:
            return "deep"
        case -1.5 | 0j:
            return "odd literal"
        case _:
            return "other"


match = [1, 2]
case = 3


def main():
    return [describe(e) for e in ({"type": "key", "key": "a"}, Click(0, 0), [1, 2, 3], 2, "s", None)] + [match, case]
