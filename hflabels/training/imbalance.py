"""Imbalanced single-label data: decisions that weigh every class equally (``--imbalance
logit_adjustment``, opt-in).

Why the old served path lost a rare class: with ``--class-weights inverse`` the prior correction
that gives calibrated scores subtracts the log of the weights (4.6 logits at 100:1), the shift the
weighted loss would teach with unlimited data, and far more than a network that fits its few rare
examples learns. With logit adjustment the correction divides out the whole prior the model trained
on instead (weights times shares: constant for inverse weights, so the weighted model's own decisions
are served; the training shares for plain training: Menon et al. 2021, post-hoc logit adjustment).
The answer is then the class with the highest likelihood of the input, every class weighed alike;
the temperature and top-label curve fitted after it keep the served score the probability that this
answer is right, and ``hflabels calibrate`` keeps the adjustment.

Why it is not the default: on a rare class the model did not learn (``python -m lab rare-class``,
8 NYT sentences among 1,600 movie ones, 3 epochs: plain and inverse-weighted MiniLM both recalled
none of 200), post-hoc adjustment answered the rare class for every input (macro-F1 0.46 -> 0.13).
It helps only where the rare class was learned; the study that would say from how many examples on
is not finished (docs: training/imbalance.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hflabels.training.choices import IMBALANCE_MODES

LOGIT_ADJUSTMENT = "logit_adjustment"


@dataclass(frozen=True)
class ImbalancePlan:
    """What training does about the class balance it was given, and why, in words."""

    mode: str  # LOGIT_ADJUSTMENT or "none"
    # The largest class count over the smallest (training split, before any resampling).
    ratio: float
    why: str

    @property
    def balanced(self) -> bool:
        return self.mode == LOGIT_ADJUSTMENT


def plan_imbalance(requested: str, counts: Sequence[int], single_label: bool) -> ImbalancePlan:
    """``requested`` (one of IMBALANCE_MODES) for these training counts; ValueError for
    logit adjustment asked of a task that does not pick one label."""
    if requested not in IMBALANCE_MODES:
        raise ValueError(f"unknown imbalance mode {requested!r}; choose one of {', '.join(IMBALANCE_MODES)}")
    present = [c for c in counts if c > 0]
    ratio = float(max(present) / min(present)) if present else 1.0
    if not single_label:
        if requested == LOGIT_ADJUSTMENT:
            raise ValueError("--imbalance logit_adjustment applies to single-label classification")
        return ImbalancePlan("none", ratio, "not single-label: scores keep the training's prior")
    if requested == "none":
        return ImbalancePlan("none", ratio, f"classes {ratio:.1f}:1, decisions keep the training's prior "
                                            "(--imbalance logit_adjustment weighs every class alike)")
    return ImbalancePlan(LOGIT_ADJUSTMENT, ratio, "--imbalance logit_adjustment: every class weighed alike")


def decision_ratios(ratios: np.ndarray, counts_before: Sequence[int], plan: ImbalancePlan) -> np.ndarray:
    """The class ratios the served prior correction divides out (its log is subtracted): the
    deliberate reweighting alone (``ratios``: loss weights, resampling), or with logit adjustment
    the whole prior the model trained on (the given shares times that reweighting)."""
    ratios = np.asarray(ratios, dtype=np.float64)
    if not plan.balanced:
        return ratios
    shares = np.maximum(np.asarray(counts_before, dtype=np.float64), 1.0)
    return ratios * shares / shares.sum()
