from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from sanet_bench import results


def row(key_parts, status="ok", **metrics):
    method, content, style, size, alpha = key_parts
    return {
        "key": results.cell_key(*key_parts), "method": method, "content": content, "style": style,
        "size": size, "alpha": alpha, "style_size": size, "status": status,
        "error": None if status == "ok" else "boom",
        "metrics": metrics, "missing": {"lpips": "no AlexNet"} if "lpips" in metrics else {},
        "seconds": 0.1, "config_hash": "h",
    }


def test_writer_appends_whole_lines_and_nan_becomes_null(tmp_path):
    with results.store(tmp_path) as w:
        w.append(row(("sanet", "c", "s", 64, 1.0), ssim=0.5))
        w.append(row(("adain", "c", "s", 64, 1.0), ssim=float("nan")))
    raw = (tmp_path / results.RESULTS).read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 2
    assert json.loads(raw.splitlines()[1])["metrics"]["ssim"] is None


def test_partial_trailing_line_ignored_then_repaired_and_corrupt_middle_line_is_an_error(tmp_path):
    with results.store(tmp_path) as w:
        w.append(row(("sanet", "c", "s", 64, 1.0), ssim=0.5))
    path = tmp_path / results.RESULTS
    with open(path, "ab") as f:
        f.write(b'{"key": "sanet|c|s2|64|1", "metr')
    assert [r["key"] for r in results.read_rows(tmp_path)] == ["sanet|c|s|64|1"]
    assert results.repair(tmp_path) == len(b'{"key": "sanet|c|s2|64|1", "metr')
    assert path.read_bytes().endswith(b"\n") and results.repair(tmp_path) == 0
    path.write_bytes(b"{broken\n" + path.read_bytes())
    with pytest.raises(results.ResultsError, match="line 1 is not valid JSON"):
        results.read_rows(tmp_path)


def test_load_keeps_the_latest_attempt_of_each_cell_in_first_seen_order(tmp_path):
    a, b = ("sanet", "c", "s", 64, 1.0), ("adain", "c", "s", 64, 0.5)
    with results.store(tmp_path) as w:
        w.append(row(a, status="failed", ssim=None))
        w.append(row(b, ssim=0.2, lpips=None))
        w.append(row(a, ssim=0.9))
    df = results.load(tmp_path)
    assert list(df["key"]) == ["sanet|c|s|64|1", "adain|c|s|64|0.5"]
    assert list(df["status"]) == ["ok", "ok"] and list(df["ssim"]) == [0.9, 0.2]
    assert list(df.columns[: len(results.FRONT)]) == list(results.FRONT)
    assert df["lpips"].dtype == float and math.isnan(df.loc[1, "lpips"])
    assert df.loc[1, "missing"] == "lpips: no AlexNet" and pd.isna(df.loc[0, "missing"])
    csv = pd.read_csv(results.write_csv(tmp_path))
    assert list(csv.columns) == list(df.columns) and list(csv["ssim"]) == [0.9, 0.2]


def test_summary_mean_std_over_ok_cells_and_counts(tmp_path):
    with results.store(tmp_path) as w:
        for i, v in enumerate((0.2, 0.4, 0.9)):
            w.append(row(("sanet", f"c{i}", "s", 64, 1.0), ssim=v))
        w.append(row(("sanet", "c9", "s", 64, 1.0), status="failed", ssim=None))
        w.append(row(("adain", "c0", "s", 64, 1.0), ssim=0.5))
    df = results.load(tmp_path)
    s = results.summary(df)
    assert s.loc["sanet", ("ssim", "mean")] == pytest.approx(0.5)
    assert s.loc["sanet", ("ssim", "std")] == pytest.approx(pd.Series([0.2, 0.4, 0.9]).std())
    assert s.loc["sanet", ("cells", "failed")] == 1 and s.loc["adain", ("cells", "ok")] == 1
    text = results.format_summary(df).splitlines()
    assert text[0].split() == ["method", "ok", "failed", "ssim"]
    assert set(text[1]) == {"-"}  # the rule under the header
    assert text[3].split()[:4] == ["sanet", "3", "1", "0.5"]
    assert results.format_summary(df.iloc[0:0]) == "no results"


def test_manifest_round_trip_is_atomic_json(tmp_path):
    results.write_manifest(tmp_path, {"config_hash": "h", "x": float("inf")})
    assert results.read_manifest(tmp_path) == {"config_hash": "h", "x": None}
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / results.MANIFEST).write_text("{")
    with pytest.raises(results.ResultsError, match="manifest.json: not valid JSON"):
        results.read_manifest(tmp_path)


def test_cells_are_counted_apart_from_references_and_set_rows(tmp_path):
    with results.store(tmp_path) as w:
        for c in ("c0", "c1", "c2"):
            w.append(row(("sanet", c, "s", 64, 1.0), ssim=0.5))
            w.append(row(("ref:content", c, "s", 64, 1.0), ssim=1.0))
        w.append(row(("adain", "c0", "s", 64, 1.0), status="failed"))
        w.append({"key": "set|sanet|64|1|64", "kind": "set", "method": "sanet", "status": "ok"})
    df = results.load(tmp_path)
    assert results.count_line(df) == "3 method cells ok, 1 failed; 3 reference cells"
    assert results.count_line(results.to_frame(results.read_rows(tmp_path))) == results.count_line(df)
    assert results.count_line(df[df["method"] == "sanet"]) == "3 method cells ok, 0 failed"


def test_could_not_run_names_each_method_without_an_ok_cell_and_its_fix(tmp_path):
    with results.store(tmp_path) as w:
        w.append(row(("sanet", "c0", "s", 64, 1.0), ssim=0.5))
        w.append(row(("sanet", "c1", "s", 64, 1.0), status="failed"))  # one ok cell: it ran
        for c in ("c0", "c1"):
            w.append({**row(("stytr2", c, "s", 64, 1.0), status="failed"), "error": "stytr2: files missing"})
            w.append(row(("wct", c, "s", 64, 1.0), status="failed"))
            w.append(row(("ref:style", c, "s", 64, 1.0), status="failed"))
    df = results.load(tmp_path)
    fix = "stytr2: missing — run `sanet-bench weights pull stytr2`"
    manifest = {"weights": {"stytr2": {"source": "auto", "error": fix}, "wct": {"source": "demo"}}}
    assert results.could_not_run(df, manifest) == {"stytr2": fix, "wct": "boom"}
    assert results.could_not_run(df, None)["stytr2"] == "stytr2: files missing"
