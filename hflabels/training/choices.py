"""The training and calibration choices a command line offers, with their defaults: kept apart
from the code that uses them (numpy, scipy, torch) so ``--help`` imports nothing heavy."""

from __future__ import annotations

# Loss weights per class (hflabels/training/metrics.py, class_weights).
WEIGHT_SCHEMES = ("none", "inverse", "sqrt_inverse", "effective")
# The training loss: cross-entropy, focal (Lin et al. 2017), or logit-adjusted (Menon et al. 2021:
# cross-entropy on the logits plus the log of the training prior, single-label; hflabels/training/losses.py).
LOSSES = ("cross_entropy", "focal", "logit_adjusted")
# What training does about imbalanced single-label classes (hflabels/training/imbalance.py).
# auto: oversample where the classes are at least AUTO_OVERSAMPLE_RATIO:1 (measured: imbalance.py).
IMBALANCE_MODES = ("auto", "none", "oversample", "logit_adjustment")
# auto oversamples from this ratio of the largest class to the smallest: measured at 20:1 and 100:1
# (docs: training/imbalance.md); below it a class has enough examples for plain training to learn it.
AUTO_OVERSAMPLE_RATIO = 10.0
# The contrastive first stage (hflabels/training/contrastive.py): auto runs it on small single-label data.
PAIR_STAGE_MODES = ("auto", "on", "off")
# Prediction-set coverage levels fitted when none are asked for.
DEFAULT_COVERAGES = (0.8, 0.9, 0.95)
# Abstention: the error bound holds with this probability over the held-out draw.
DEFAULT_ABSTAIN_CONFIDENCE = 0.9
# Guarantees are fitted on half the validation split when each half has this many examples.
MIN_HELD_OUT = 100
