"""The lab: measurement and experiment tools around the product (benchmarks, peers, soak,
accelerations, the real-data and imbalance studies, the guarantees report, plots). Run as
``python -m lab TOOL`` from the repository root; ``make bench`` and friends call it. The lab
imports the product (``handler``, ``hflabels``); the product never imports the lab."""
