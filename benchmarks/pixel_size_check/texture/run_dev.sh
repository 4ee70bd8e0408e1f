#!/bin/bash
# development half: ours_basic, varied, a..f (12 cases each; varied 10)
cd "$(dirname "$0")"
for s in ours_basic varied a b c d e f; do
  n=12; [ $s = varied ] && n=10
  nice /work/venv/bin/python texture_study.py $s -n $n --out /tmp/tex_rows_$s.csv > /tmp/tex_log_$s.txt 2>&1
done
echo dev done > /tmp/tex_dev_done
