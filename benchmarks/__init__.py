"""lstmcore's benchmarks, installed as ``lstmcore.benchmarks`` (``lstmcore bench NAME``).

From a checkout they also run as ``python -m benchmarks.NAME``; they import lstmcore, and
lstmcore never imports them. Measured figures, with the machine and the command, are in
``benchmarks/results/``.
"""
