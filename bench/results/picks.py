"""The check of selections.parquet against cycles.parquet: what in a folder's picks no run writes. Kept apart from
the store, which reads both tables and refuses a folder whose picks fail it (on resume and in `report`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.core.errors import shown


def pick_problem(picks: pd.DataFrame, cycles: pd.DataFrame, n_pool: int | None) -> str:
    """What in selections.parquet no run writes, or ''. A run writes, per (strategy, seed, cycle), the pool indices
    first labeled at that cycle, ranked 0..k-1, where k is what the cycle's row adds to n_labeled (its n_labeled
    at cycle 0); an index once per job; and picks ahead of rows by at most one cycle per job (a kill between the
    two files' renames)."""
    numbers = {c: pd.to_numeric(picks[c], errors="coerce") for c in ("seed", "cycle", "rank", "index")}
    for column, values in numbers.items():
        bad = values[~np.isfinite(values) | (values != np.floor(values))]
        if len(bad):
            return f"{column} {shown(picks[column][bad.index[0]])}, where a whole number belongs"
    picks = picks.assign(**{c: v.astype(np.int64) for c, v in numbers.items()}, strategy=picks["strategy"].astype(str))
    rows = cycles.assign(strategy=cycles["strategy"].astype(str), seed=cycles["seed"].astype(np.int64),
                         cycle=cycles["cycle"].astype(np.int64), n_labeled=cycles["n_labeled"].astype(float))
    job = ["strategy", "seed"]
    sizes = picks.groupby([*job, "cycle"]).size().rename("picks").reset_index()
    last = rows.groupby(job)["cycle"].max().rename("last").reset_index()
    ahead = sizes.merge(last, on=job, how="left").merge(rows[[*job, "cycle"]].assign(row=True), how="left",
                                                        on=[*job, "cycle"])
    orphans = ahead[ahead["row"].isna() & (ahead["cycle"] != ahead["last"].fillna(-1) + 1)]
    if len(orphans):
        o = orphans.iloc[0]
        return f"{o['strategy']}/seed{o['seed']} cycle {o['cycle']} has picks but no row in cycles.parquet"
    if rows["dataset"].nunique() <= 1 and not rows.empty:  # picks carry no dataset: one dataset per folder
        before = rows.assign(cycle=rows["cycle"] + 1)[[*job, "cycle", "n_labeled"]].rename(columns={"n_labeled": "b"})
        added = rows.merge(before, how="left", on=[*job, "cycle"])
        added["adds"] = np.where(added["cycle"] == 0, added["n_labeled"], added["n_labeled"] - added["b"])
        check = sizes.merge(added[[*job, "cycle", "adds"]], on=[*job, "cycle"]).dropna(subset=["adds"])
        wrong = check[check["picks"] != check["adds"]]
        if len(wrong):
            w = wrong.iloc[0]
            return f"{w['strategy']}/seed{w['seed']} cycle {w['cycle']} has {w['picks']} picks where its row adds " \
                   f"{w['adds']:g}"
    index = picks["index"]
    outside = index[(index < 0) | (index >= (n_pool if n_pool is not None else np.inf))]
    if len(outside):
        pool = f"0..{n_pool - 1}" if n_pool is not None else "from 0"
        return f"index {outside.iloc[0]} outside the training pool ({pool})"
    ranks = picks.groupby([*job, "cycle"])["rank"].agg(lambda r: sorted(r) == list(range(len(r))))
    if not ranks.all():
        s, seed, c = ranks.index[~ranks.to_numpy()][0]
        return f"{s}/seed{seed} cycle {c} has ranks that are not 0..k-1 once each"
    twice = picks[picks.duplicated([*job, "index"])]
    if len(twice):
        t = twice.iloc[0]
        return f"pool index {t['index']} picked twice by {t['strategy']}/seed{t['seed']}"
    return ""
