"""Speed of measure_lesions: 50 lesions on a 1000 x 1000 label image (target: well under 1 s).

    python benchmarks/bench_measure.py
"""

import time

import numpy as np
from skimage import draw

from napari_calcinosis import measure_lesions

rng = np.random.default_rng(0)
labels = np.zeros((1000, 1000), np.int32)
for label in range(1, 51):
    labels[draw.disk(rng.uniform(30, 970, size=2), rng.uniform(3, 25), shape=labels.shape)] = label
image = rng.normal(size=labels.shape)
times = []
for _ in range(5):
    t0 = time.perf_counter()
    measure_lesions(labels, (0.1, 0.1), image)
    times.append(time.perf_counter() - t0)
print(f"measure_lesions, 50 lesions on 1000x1000: best {min(times):.3f} s, median {np.median(times):.3f} s")
