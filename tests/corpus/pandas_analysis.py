"""A typical data-analysis script."""
import numpy as np
import pandas as pd

RNG = np.random.default_rng(42)


def load() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "region": RNG.choice(["north", "south", "east"], size=100),
            "sales": RNG.normal(100, 15, size=100).round(2),
            "units": RNG.integers(1, 10, size=100),
        }
    )
    frame["price"] = frame.eval("sales / units")
    return frame


def summarise(frame: pd.DataFrame) -> dict:
    grouped = (
        frame.groupby("region", as_index=False)
        .agg(total=("sales", "sum"), mean_units=("units", "mean"))
        .sort_values("total", ascending=False)
    )
    return grouped.set_index("region")["total"].round(1).to_dict()


def main():
    print("Analyzing...")
    frame = load()
    frame.loc[frame["sales"] > 120, "flag"] = True
    pivot = frame.pivot_table(index="region", values="units", aggfunc="sum")
    return {"summary": summarise(frame), "rows": len(frame), "pivot": pivot["units"].to_dict()}
