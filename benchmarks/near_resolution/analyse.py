"""Evaluate resolution flags on deposits.csv (from collect.py). Prints tables; writes rules.csv."""
from pathlib import Path
import numpy as np, pandas as pd
HERE = Path(__file__).resolve().parent
pd.set_option('display.width', 250); pd.set_option('display.max_columns', 40); pd.set_option('display.max_rows', 400)

d = pd.read_csv(HERE / 'deposits.csv')
d['src'] = d['source'].str.replace('generator_', '').str.replace('ours_basic', 'ours')
n_all = len(d)
print('rows (seeded deposit x config):', n_all)
print(pd.crosstab(d['src'], d['config']))
print('status counts by config:\n', pd.crosstab(d['config'], d['status']))
ok = d[d['status'] == 'ok'].copy()
# merged lesions: two seeds on one lesion (second is duplicate_seed) -> truth of one deposit is wrong reference
print('ok rows on a lesion shared with another seed:', int(ok['shared_lesion'].sum()), 'excluded')
ok = ok[ok['shared_lesion'] == 0].copy()
ok['rel'] = (ok['area_mm2'] - ok['true_area_mm2']) / ok['true_area_mm2']
ok['abs'] = ok['rel'].abs()
ok['gpx'] = np.sqrt(ok['sr'] * ok['sc'])
ok['maxpx'] = np.maximum(ok['sr'], ok['sc'])
ok['aniso'] = ok['config'] == 'aniso'
ok['short_px'] = ok['short_axis_mm'] / ok['maxpx']
ok['short_gpx'] = ok['short_axis_mm'] / ok['gpx']
ok['edge_ratio'] = ok['perimeter_px'] / ok['area_px']  # perimeter/area in pixel units
ok['unrel'] = ok['abs'] > 0.25
ok.to_csv(HERE / 'deposits_ok.csv', index=False)
print('measured deposits used:', len(ok))

def q(x, p):
    return float(np.percentile(x, p)) if len(x) else np.nan

def evaluate(flag, sub=ok):
    f = flag.loc[sub.index]
    a = sub['abs']; u = sub['unrel']
    r = dict(share=f.mean(), n_flag=int(f.sum()),
             med_f=q(a[f], 50), p90_f=q(a[f], 90), med_u=q(a[~f], 50), p90_u=q(a[~f], 90),
             bias_f=q(sub['rel'][f], 50), bias_u=q(sub['rel'][~f], 50),
             sens25=(f & u).sum() / max(u.sum(), 1), spec25=(~f & ~u).sum() / max((~u).sum(), 1),
             gt50_u=(a[~f] > 0.5).mean(), caught100=(f & (a > 1)).sum() / max((a > 1).sum(), 1))
    r['balacc'] = (r['sens25'] + r['spec25']) / 2
    # per source: unflagged median and p90, worst across sources; flagged share of native accurate deposits
    per = []
    for s, g in sub.groupby('src'):
        fg = f.loc[g.index]
        nat = g['config'] == 'native'
        acc = nat & (g['abs'] < 0.15)
        per.append(dict(src=s, med_u=q(g['abs'][~fg], 50), p90_u=q(g['abs'][~fg], 90),
                        flag_acc_native=fg[acc].mean() if acc.any() else np.nan,
                        flag_native=fg[nat].mean()))
    per = pd.DataFrame(per).set_index('src')
    r['worst_src_med_u'] = per['med_u'].max(); r['worst_src_med_u_name'] = per['med_u'].idxmax()
    r['worst_src_p90_u'] = per['p90_u'].max(); r['worst_src_p90_u_name'] = per['p90_u'].idxmax()
    r['max_src_flag_acc_native'] = per['flag_acc_native'].max(); r['max_src_flag_acc_name'] = per['flag_acc_native'].idxmax()
    r['flag_acc_native_all'] = f[(sub['config'] == 'native') & (sub['abs'] < 0.15)].mean()
    return r, per

rules = {}
for K in (8, 10, 12, 14, 16, 18, 20, 25, 30, 40):
    rules[f'area_px<{K}'] = ok['area_px'] < K
for S in (2, 2.5, 3, 3.5, 4, 4.5, 5, 6):
    rules[f'short_px<{S}'] = ok['short_px'] < S
for S in (2, 3, 4, 5):
    rules[f'short_gpx<{S}'] = ok['short_gpx'] < S
for A in (0.5, 1, 1.5, 2, 3, 4):
    rules[f'area_mm2<{A}'] = ok['area_mm2'] < A
for T in (1.0, 1.2, 1.5):
    rules[f'perim/area_px>{T}'] = ok['edge_ratio'] > T
for K in (10, 15, 20, 25):
    for A in (1, 1.5, 2):
        rules[f'area_px<{K} | mm2<{A}'] = (ok['area_px'] < K) | (ok['area_mm2'] < A)
for K in (10, 15, 20):
    for S in (2.5, 3, 4):
        rules[f'area_px<{K} | short_px<{S}'] = (ok['area_px'] < K) | (ok['short_px'] < S)
for S in (2.5, 3):
    for A in (1, 1.5):
        rules[f'short_px<{S} | mm2<{A}'] = (ok['short_px'] < S) | (ok['area_mm2'] < A)

if __name__ == '__main__':
    res = []
    for name, fl in rules.items():
        r, _ = evaluate(fl)
        res.append(dict(rule=name, **r))
    res = pd.DataFrame(res).set_index('rule')
    res.to_csv(HERE / 'rules.csv')
    cols = ['share', 'med_f', 'p90_f', 'med_u', 'p90_u', 'bias_u', 'sens25', 'spec25', 'balacc', 'gt50_u', 'caught100',
            'worst_src_med_u', 'worst_src_med_u_name', 'worst_src_p90_u', 'worst_src_p90_u_name',
            'flag_acc_native_all', 'max_src_flag_acc_native', 'max_src_flag_acc_name']
    print(res[cols].round(3).to_string())
    extra = {'area_px<14 | short_px<4': (ok['area_px'] < 14) | (ok['short_px'] < 4),
             'short_px<4.5 | mm2<0.5': (ok['short_px'] < 4.5) | (ok['area_mm2'] < 0.5),
             'short_px<4.5 | mm2<1': (ok['short_px'] < 4.5) | (ok['area_mm2'] < 1)}
    res2 = pd.DataFrame([dict(rule=k, **evaluate(v)[0]) for k, v in extra.items()]).set_index('rule')
    print(res2[cols].round(3).to_string())
    pd.concat([res, res2]).to_csv(HERE / 'rules.csv')
