#!/bin/bash
# held-out half: g..m and the two bundled samples (features only; the rule is applied by rule.py)
cd "$(dirname "$0")"
for s in g h i j k l m sample; do
  nice /work/venv/bin/python texture_study.py $s -n 12 --out /tmp/tex_held_$s.csv > /tmp/tex_held_log_$s.txt 2>&1
done
echo held done > /tmp/tex_held_done
