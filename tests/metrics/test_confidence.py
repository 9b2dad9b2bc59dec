"""Bootstrap intervals and paired Wilcoxon tests with Holm correction (sanet_bench.results)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from sanet_bench import results


def _frame(shift: dict[str, float], n: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n)
    rows = [
        {"method": m, "content": f"c{i % 4}", "style": f"s{i // 4}", "size": 64, "alpha": 1.0, "status": "ok",
         "lpips": base[i] + d + 0.01 * rng.normal()}
        for m, d in shift.items() for i in range(n)
    ]
    return pd.DataFrame(rows)


def test_confidence_is_seeded_contains_the_mean_and_shrinks_with_level():
    df = _frame({"a": 0.0, "b": 1.0})
    ci = results.confidence(df, ["lpips"], seed=3)
    assert ci.equals(results.confidence(df, ["lpips"], seed=3))
    a = ci.set_index("method").loc["a"]
    assert a["lo"] < a["mean"] < a["hi"] and a["n"] == 12
    assert a["mean"] == df.loc[df["method"] == "a", "lpips"].mean()
    narrow = results.confidence(df, ["lpips"], seed=3, level=0.5).set_index("method").loc["a"]
    assert a["lo"] < narrow["lo"] and narrow["hi"] < a["hi"]


def test_paired_tests_use_wilcoxon_on_common_cells_and_holm():
    df = _frame({"a": 0.0, "b": 0.5, "c": 0.5005})
    t = results.paired_tests(df, ["lpips"]).set_index(["method_a", "method_b"])
    pa, pb = df[df["method"] == "a"]["lpips"].to_numpy(), df[df["method"] == "b"]["lpips"].to_numpy()
    assert t.loc[("a", "b"), "p"] == wilcoxon(pa - pb).pvalue
    assert t.loc[("a", "b"), "significant"] and not t.loc[("b", "c"), "significant"]
    smallest = t["p"].idxmin()
    assert t.loc[smallest, "p_holm"] == min(1.0, 3 * t.loc[smallest, "p"])
    assert (t["p_holm"] >= t["p"]).all()
    # a cell only one method scored is left out of the pair
    df.loc[(df["method"] == "a") & (df["content"] == "c0"), "status"] = "failed"
    assert results.paired_tests(df, ["lpips"]).set_index(["method_a", "method_b"]).loc[("a", "b"), "n"] == 9
