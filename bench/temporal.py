"""Benchmark: the core model's hand-written transformer block vs ``nn.TransformerEncoderLayer``.

Both sides are pre-norm blocks of the same width, heads and feed-forward size,
run forward + backward in training mode (dropout on) over a day batch of
windows with a key padding mask (a few masked days per window), as the core
model's temporal encoder sees them. Prints the median time of each and the ratio.

Run:  .venv/bin/python bench/temporal.py              (8 days x 200 stocks x 20-day windows)
      .venv/bin/python bench/temporal.py --windows 400 --length 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from alphagraph.models.core import TransformerBlock


def timed(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=1600)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.windows, args.length, args.hidden, requires_grad=True)
    mask = torch.rand(args.windows, args.length) > 0.05
    mask[:, -1] = True  # the window's own date is always present

    ours = TransformerBlock(args.hidden, args.heads, 0.1).train()
    ref = nn.TransformerEncoderLayer(
        args.hidden, args.heads, 2 * args.hidden, 0.1, activation="gelu", batch_first=True, norm_first=True
    ).train()

    def step_ours() -> None:
        ours(x, mask).sum().backward()

    def step_ref() -> None:
        ref(x, src_key_padding_mask=~mask).sum().backward()

    t_ours, t_ref = timed(step_ours, args.repeats), timed(step_ref, args.repeats)
    print(f"windows {args.windows} x {args.length} days, hidden {args.hidden}, {args.threads} threads, forward + backward")
    print(f"  TransformerBlock            {t_ours * 1e3:8.1f} ms")
    print(f"  nn.TransformerEncoderLayer  {t_ref * 1e3:8.1f} ms")
    print(f"  ratio (reference / ours)    {t_ref / t_ours:8.2f}x")


if __name__ == "__main__":
    main()
