"""Benchmarks of halo-async: speed and memory, as ratios against baselines in the same run.

``python -m benchmarks.run`` runs them all against an emulator in its own process (see
``benchmarks/README.md``). Each module measures one thing: :mod:`benchmarks.fanout`,
:mod:`benchmarks.decode`, :mod:`benchmarks.memory`, :mod:`benchmarks.first_row`.
"""
