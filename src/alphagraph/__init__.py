"""alphagraph: a reproducible graph-model pipeline for cross-sectional stock returns."""

import os

# OpenMP threads that spin while waiting (the default) slow LightGBM and torch
# by 5-10x on a small shared CPU (measured: a LightGBM fit 1.4 s -> 13.5 s, a
# 16-day graph batch 31 ms -> 230 ms). It must be set before either library
# loads its OpenMP runtime, so it is set when the package is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
