"""The built-in synthetic market: a realistic equity panel with a planted, known signal.

``generate_market(cfg, seed)`` returns prices, universe, relations and the
oracle (the planted expected return). ``signal_report(market)`` measures how
strong the planted signal is. docs/synthetic_market.md describes both.

Oracle alignment: the oracle row (date=t, code=i) is the planted expected
simple return from close(t) to the close of i's next trading day, computed
only from information available at the close of t. It therefore lines up with
a prediction made at t and with the target ``ret_1d`` dated t.

The market is built in parts, each its own module: ``universe`` (calendar,
stocks, listings), ``relations`` (true and observed links), ``dynamics``
(factors, regimes, GARCH, volume), ``components`` (the planted signal),
``simulate`` (the day loop), ``frames`` (the output), ``market``
(:func:`generate_market`) and ``report`` (:func:`signal_report`).
"""

from __future__ import annotations

from alphagraph.data.synthetic.components import COMPONENTS
from alphagraph.data.synthetic.dynamics import _Dynamics
from alphagraph.data.synthetic.frames import Market
from alphagraph.data.synthetic.market import generate_market
from alphagraph.data.synthetic.relations import RELATIONS
from alphagraph.data.synthetic.report import nominal_shares, signal_report

__all__ = ["COMPONENTS", "RELATIONS", "Market", "_Dynamics", "generate_market", "nominal_shares", "signal_report"]
