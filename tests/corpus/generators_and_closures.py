def counter():
    count = 0

    def inc():
        nonlocal count
        count += 1
        return count
    return inc


def fib():
    a, b = 0, 1
    while True:
        yield a
        a, b = b, a + b


def delegate():
    yield from range(3)
    received = yield "ready"
    return received


total = 0


def main():
    global total
    inc = counter()
    inc(); inc()
    gen = fib()
    values = [next(gen) for _ in range(10)]
    total += sum(values)
    del values[0]
    assert total > 0, "positive"
    return [inc(), total, list(delegate())]
