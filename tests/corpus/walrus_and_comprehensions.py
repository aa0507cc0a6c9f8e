import re


def main():
    data = [3, 8, 1, 9, 4]
    if (n := len(data)) > 3:
        pass
    evens = [y for x in data if (y := x * 2) > 5]
    squares = {x: x * x for x in range(5)}
    unique = {x % 3 for x in data}
    gen = sum(x for x in data if x > 2)
    while (m := re.search(r"\d", "abc1")) is None:
        break
    matrix = [[i * j for j in range(3)] for i in range(3)]
    flat = [v for row in matrix for v in row if v]
    lam = (lambda *a, **k: (a, k))(1, b=2)
    first, *middle, last = data
    a = b = c = 0
    x = 1 if n else 2
    return [n, evens, squares, sorted(unique), gen, m.group(), flat, lam[0], middle, last, x]
