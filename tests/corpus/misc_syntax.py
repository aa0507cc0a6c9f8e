import sys as sysmod, os.path
from collections import (
    Counter,
    defaultdict as dd,
)
from os import *  # noqa

x = 0b1010 + 0o17 + 0xFF + 1_000 + 1e-3 + 2j.imag + .5
y = not x or (x and x) is not None
z = [*range(3), *[4, 5]]
w = {**{"a": 1}, "b": 2}
s = slice(None)[::-1] if False else None
t = 1,
u = x if x else y
v = ...
big = 123456789012345678901234567890
chained = 1 < 2 <= 3 != 4
print("semicolons"); q = 1; r = 2
if x: pass
elif y: pass
else: pass
for i in range(2): continue
else: pass
while False: break
else: pass
try: pass
except (ValueError, TypeError) as e: raise
except Exception: raise RuntimeError("x") from None
lst = [1, 2, 3]
lst[1:2] = [9]
lst[::2]
a = lst[-1]
del lst[0], a
class Empty: pass
def star(*, key): return key
def pos(a, b=2, /, c=3, *args, d, e=5, **kw): return (a, b, c, args, d, e, kw)
matrix = [[1]] @ [[1]] if False else None
n = ~5 ^ 3 & 1 | 2 << 1 >> 1
n //= 2; n **= 2; n %= 7
if False:
    n @= n
print(f"{sysmod.version_info >= (3, 11)!s}", end="", file=sysmod.stdout)


def main():
    return pos(1, d=4)
