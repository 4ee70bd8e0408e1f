import pandas as pd
pd.set_option('display.width', 250); pd.set_option('display.max_columns', 40)
d = pd.read_csv('all_rows.csv')
LO, HI, m = 2.0, 18.5, 'seg_maxdisc_largest'
refused = d.error.astype(str).str.contains('spans')
d['fires'] = (d[m] < LO) | (d[m] > HI) | refused
c = d[d.factor == 1]
t = c.groupby('source')[m].agg(n='size', min='min', max='max')
t['false_alarms'] = c.groupby('source')['fires'].sum()
t['margin_lo'] = (t['min'] / LO).round(2); t['margin_hi'] = (HI / t['max']).round(2)
for f in (0.33, 0.5, 0.67, 1.5, 2.0, 3.0):
    t[f'catch_x{f}'] = (100 * d[d.factor == f].groupby('source')['fires'].mean()).round(0)
t.loc['ALL'] = [len(c), c[m].min(), c[m].max(), c.fires.sum(), round(c[m].min() / LO, 2), round(HI / c[m].max(), 2)] + \
    [round(100 * d[d.factor == f].fires.mean(), 1) for f in (0.33, 0.5, 0.67, 1.5, 2.0, 3.0)]
print(t.round(2)); t.round(3).to_csv('summary_maxdisc_2.0_18.5.csv')
print('median dice by factor', d.groupby('factor').dice.median().round(3).to_dict())
print('cases with dice<0.9 by factor', d.groupby('factor').apply(lambda g: (g.dice < 0.9).mean()).round(2).to_dict())
