import numpy as np
from numpy.linalg import solve


def main():
    a = np.array([[3, 1], [1, 2]], dtype=float)
    b = np.array([9, 8])
    x = solve(a, b)
    m = np.arange(12).reshape(3, 4)
    m[m % 2 == 0] *= -1
    stacked = np.vstack([m, m @ np.ones((4, 4))[:, :4][:4]]) if m.shape[1] == 4 else m
    return {"x": x.tolist(), "sum": int(m.sum()), "shape": list(stacked.shape), "mat": (a @ a).tolist()}
