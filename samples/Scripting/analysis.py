"""A user's analysis script. The .NET program passes `columns` (a dict of name -> numpy array) and `threshold`;
the script leaves its answers in globals, which .NET reads back."""
import numpy as np

print(f"analysing {len(columns)} columns of {len(next(iter(columns.values())))} rows")

stats = {}
for name, values in columns.items():
    stats[name] = {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
    }

height, weight = columns["height"], columns["weight"]
correlation = float(np.corrcoef(height, weight)[0, 1])
bmi = weight / height ** 2                      # an array result: read back as a double[]
above = int(np.count_nonzero(bmi > threshold))
