"""Round 3: evaluate.py with rule3.take_back3 (same arguments, seed range included; same CSV
columns, so summarise.py reads it).

    python benchmarks/bone_takeback/evaluate3.py OUT.csv SOURCES VARIANTS [FIRST-LAST seeds, default 0-14]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import main  # noqa: E402
from rule3 import take_back3  # noqa: E402

if __name__ == "__main__":
    main(take_back3)
