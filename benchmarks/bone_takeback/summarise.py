"""Per-source and pooled figures for the criteria of README.md, from evaluate.py's CSVs.

    python benchmarks/bone_takeback/summarise.py OUT.csv
"""
import sys
from pathlib import Path
import numpy as np, pandas as pd
from napari_calcinosis.stats import lins_ccc


def figures(d, tag):
    touch = d[d.gap < 0.3]
    apart = d[~(d.gap < 0.3)]
    out = {}
    for when in "01":
        st, ar = touch[f"status{when}"], touch[f"area{when}"]
        ok = st == "ok"
        rel = (ar[ok] - touch.true[ok]).abs() / touch.true[ok]
        allok = d[d[f"status{when}"] == "ok"]
        ratio_all = allok[f"area{when}"] / allok.true
        out[f"touch_med_abs_err_{when}"] = 100 * float(np.median(rel)) if len(rel) else np.nan
        out[f"touch_med_ratio_{when}"] = float(np.median(ar[ok] / touch.true[ok])) if ok.any() else np.nan
        out[f"touch_not_ok_{when}"] = 100 * float((st.isin(["on_bone"]) | (st != "ok") & (st != "duplicate_seed")).mean()) if len(st) else np.nan
        out[f"over2x_{when}"] = 100 * float((ratio_all > 2).mean())
        out[f"ccc_{when}"] = float(lins_ccc(allok.true, allok[f"area{when}"])[0]) if len(allok) > 2 else np.nan
    both = touch[(touch.status0 == "ok") & (touch.status1 == "ok")]
    out["touch_paired_med_err_0"] = 100 * float(np.median((both.area0 - both.true).abs() / both.true)) if len(both) else np.nan
    out["touch_paired_med_err_1"] = 100 * float(np.median((both.area1 - both.true).abs() / both.true)) if len(both) else np.nan
    out["n_touch"] = len(touch); out["n_touch_ok0"] = int((touch.status0 == "ok").sum()); out["n_touch_ok1"] = int((touch.status1 == "ok").sum())
    out["apart_changed"] = int(((apart.area0 - apart.area1).abs() > 1e-9).sum() + (apart.status0 != apart.status1).sum())
    off = d[(~d.borders_mask0) & (d.status0 != "on_bone")]
    out["e_changed_off_mask"] = int(((off.area0 - off.area1).abs() > 1e-9).sum() + (off.status0 != off.status1).sum())
    for when in "01":
        ok = apart[apart[f"status{when}"] == "ok"]
        out[f"apart_med_abs_err_{when}"] = 100 * float(np.median((ok[f"area{when}"] - ok.true).abs() / ok.true)) if len(ok) else np.nan
    out["n_changed_touch"] = int(((touch.area0 - touch.area1).abs() > 1e-9).sum())
    return out


def main():
    p = Path(sys.argv[1])
    df = pd.read_csv(p); cs = pd.read_csv(p.with_suffix(".cases.csv"))
    pd.set_option("display.width", 250); pd.set_option("display.max_columns", 40)
    for v, d in df.groupby("variant"):
        rows = [dict(source=s, **figures(g, s)) for s, g in d.groupby("source")]
        rows.append(dict(source="pooled", **figures(d, "pooled")))
        t = pd.DataFrame(rows).set_index("source")
        c = cs[cs.variant == v]
        mod = c[c.modified]
        t.loc["pooled", "dice_drop_median_modified"] = float((mod.dice_before - mod.dice_after).median()) if len(mod) else 0.0
        t.loc["pooled", "n_modified_images"] = len(mod)
        t.loc["pooled", "taken_px"] = c.taken_px.sum(); t.loc["pooled", "taken_true_bone"] = c.taken_true_bone.sum()
        t.loc["pooled", "taken_deposit"] = c.taken_deposit.sum()
        t.loc["pooled", "t_rule_per_seed_ms"] = 1000 * c.t_rule.sum() / c.n.sum()
        t.loc["pooled", "t_base_per_seed_ms"] = 1000 * c.t_base.sum() / c.n.sum()
        print(f"=== variant {v}")
        print(t.round(3).T.to_string())



def verdict(path, variant=0):
    """Pass/fail per pre-written criterion (README.md), for the frozen rule (variant 0)."""
    df = pd.read_csv(path); cs = pd.read_csv(Path(path).with_suffix(".cases.csv"))
    df = df[df.variant == variant]; cs = cs[cs.variant == variant]
    per = {s: figures(g, s) for s, g in df.groupby("source")}
    pool = figures(df, "pooled")
    mod = cs[cs.modified]
    dd = float((mod.dice_before - mod.dice_after).median()) if len(mod) else 0.0
    b_rises = {s: f["touch_med_abs_err_1"] - f["touch_med_abs_err_0"] for s, f in per.items()}
    g_falls = {s: f["ccc_0"] - f["ccc_1"] for s, f in per.items()}
    crit = {
        "a pooled touching median |err| falls >= 3 pts": (pool["touch_med_abs_err_0"] - pool["touch_med_abs_err_1"], ">= 3.0",
            pool["touch_med_abs_err_0"] - pool["touch_med_abs_err_1"] >= 3.0),
        "b no source's touching median |err| rises > 2 pts": (max(v for v in b_rises.values() if np.isfinite(v)), "<= 2.0",
            all(not np.isfinite(v) or v <= 2.0 for v in b_rises.values())),
        "c pooled share of touching seeds not measured does not rise": (pool["touch_not_ok_1"] - pool["touch_not_ok_0"], "<= 0",
            pool["touch_not_ok_1"] <= pool["touch_not_ok_0"] + 1e-9),
        "d pooled share read > 2x rises <= 1 pt": (pool["over2x_1"] - pool["over2x_0"], "<= 1.0", pool["over2x_1"] - pool["over2x_0"] <= 1.0),
        "e seeds off the mask unchanged": (pool["e_changed_off_mask"], "== 0", pool["e_changed_off_mask"] == 0),
        "f median bone Dice drop on modified images <= 0.002": (dd, "<= 0.002", dd <= 0.002),
        "g no source's CCC falls > 0.01": (max(g_falls.values()), "<= 0.01", all(v <= 0.01 for v in g_falls.values())),
        "h pooled median |err| apart from true bone rises <= 1 pt": (pool["apart_med_abs_err_1"] - pool["apart_med_abs_err_0"], "<= 1.0",
            pool["apart_med_abs_err_1"] - pool["apart_med_abs_err_0"] <= 1.0),
    }
    for k, (v, need, ok) in crit.items():
        print(f"{'PASS' if ok else 'FAIL'}  {k}: {v:+.4f} (needs {need})")
    print("per-source touching |err| rise:", {k: round(v, 2) for k, v in b_rises.items()})
    print("per-source CCC fall:", {k: round(v, 4) for k, v in g_falls.items()})
    print("OVERALL", "PASS" if all(ok for *_, ok in crit.values()) else "FAIL")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--verdict"]:
        verdict(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    else:
        main()
