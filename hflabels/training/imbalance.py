"""Imbalanced single-label data: oversampling the rarer classes in training and serving decisions
that weigh every class alike (``--imbalance auto``, the default, from AUTO_OVERSAMPLE_RATIO:1), or
post-hoc logit adjustment alone (``--imbalance logit_adjustment``, opt-in).

Why the old served path lost a rare class: with ``--class-weights inverse`` the prior correction
that gives calibrated scores subtracts the log of the weights (4.6 logits at 100:1), the shift the
weighted loss would teach with unlimited data, and far more than a network that fits its few rare
examples learns. With a balanced mode the correction divides out the whole prior the model trained
on instead (weights times shares: constant for inverse weights or oversampling, so the model's own
decisions are served; the training shares for plain training: Menon et al. 2021, post-hoc logit
adjustment). The answer is then the class with the highest likelihood of the input, every class
weighed alike; the temperature and top-label curve fitted after it keep the served score the
probability that this answer is right, and ``hflabels calibrate`` keeps the adjustment.

Why oversampling is the default and post-hoc adjustment is not (``python -m lab rare-class``: NYT
sentences as a rare class among 2,400 movie sentences, 3 epochs, docs: training/imbalance.md): at
100:1 (12 rare training examples) plain training and inverse class weights learn nothing of the
class (recall 0 of 200; its logit is the same for every input), so post-hoc adjustment answers it
everywhere; oversampled, the rare examples are seen a hundred times more often and the class is
learned (recall and macro-F1 in the docs' table). Where ``--sampling`` or ``--class-weights``
already shape the balance, auto adds no resampling and serves the decisions they trained (their
weights are no longer divided back out); below AUTO_OVERSAMPLE_RATIO:1 it does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hflabels.training.choices import AUTO_OVERSAMPLE_RATIO, IMBALANCE_MODES

LOGIT_ADJUSTMENT = "logit_adjustment"
OVERSAMPLE = "oversample"


@dataclass(frozen=True)
class BalanceOptions:
    """The training options given that already reweigh the classes."""

    sampling: bool = False
    class_weights: bool = False
    focal_loss: bool = False
    logit_adjusted_loss: bool = False

    @property
    def given(self) -> bool:
        return self.sampling or self.class_weights or self.focal_loss or self.logit_adjusted_loss

    @property
    def flatten_prior(self) -> bool:
        """Whether they were given to flatten the training prior (focal loss alone does not)."""
        return self.sampling or self.class_weights or self.logit_adjusted_loss

    @property
    def names(self) -> str:
        """As the command line names them."""
        flags = (
            ("--sampling", self.sampling),
            ("--class-weights", self.class_weights),
            ("--loss focal", self.focal_loss),
            ("--loss logit_adjusted", self.logit_adjusted_loss),
        )
        return "/".join(name for name, on in flags if on)


@dataclass(frozen=True)
class ImbalancePlan:
    """What training does about the class balance it was given, and why, in words."""

    mode: str  # OVERSAMPLE, LOGIT_ADJUSTMENT or "none"
    # The largest class count over the smallest (training split, before any resampling).
    ratio: float
    why: str

    @property
    def balanced(self) -> bool:
        """Whether the served decisions weigh every class alike."""
        return self.mode in (LOGIT_ADJUSTMENT, OVERSAMPLE)

    @property
    def sampling(self) -> str:
        """The resampling this plan itself adds to the training split."""
        return OVERSAMPLE if self.mode == OVERSAMPLE else "none"


def plan_imbalance(
    requested: str, counts: Sequence[int], single_label: bool, given: BalanceOptions = BalanceOptions()
) -> ImbalancePlan:
    """``requested`` (one of IMBALANCE_MODES) for these training counts (before any resampling);
    ``given``: the options that already reweigh the classes (auto then leaves them be).
    ValueError for a balanced mode asked of a task that does not pick one label, or oversampling
    asked on top of such options."""
    if requested not in IMBALANCE_MODES:
        raise ValueError(f"unknown imbalance mode {requested!r}; choose one of {', '.join(IMBALANCE_MODES)}")
    present = [c for c in counts if c > 0]
    ratio = float(max(present) / min(present)) if present else 1.0
    if not single_label:
        if requested in (LOGIT_ADJUSTMENT, OVERSAMPLE):
            raise ValueError(f"--imbalance {requested} applies to single-label classification")
        return ImbalancePlan("none", ratio, "not single-label: scores keep the training's prior")
    if requested == OVERSAMPLE and given.given:
        raise ValueError(f"--imbalance oversample resamples the classes itself: drop {given.names}")
    if requested == LOGIT_ADJUSTMENT:
        return ImbalancePlan(LOGIT_ADJUSTMENT, ratio, "--imbalance logit_adjustment: every class weighed alike")
    oversampled = (f"classes {ratio:.1f}:1: the rarer classes oversampled to the largest's count, decisions weigh "
                   "every class alike")  # fmt: skip
    if requested == OVERSAMPLE:
        return ImbalancePlan(OVERSAMPLE, ratio, f"{oversampled} (--imbalance oversample)")
    kept = f"classes {ratio:.1f}:1, decisions keep the training's prior"
    if requested == "none":
        return ImbalancePlan("none", ratio, f"{kept} (as asked)")
    if ratio < AUTO_OVERSAMPLE_RATIO:
        return ImbalancePlan("none", ratio, f"{kept} (auto acts from {AUTO_OVERSAMPLE_RATIO:.0f}:1)")
    if not given.given:
        return ImbalancePlan(OVERSAMPLE, ratio, f"{oversampled} (--imbalance none keeps the training's prior)")
    if not given.flatten_prior:
        # Focal loss alone does not flatten the prior: dividing it out would answer an unlearned rare
        # class everywhere (post-hoc adjustment on plain training, docs: training/imbalance.md).
        return ImbalancePlan("none", ratio, f"{kept} (--loss focal alone)")
    # The weights or resampling asked for flattened the prior on purpose: serve the decisions they
    # trained, where dividing them back out would undo them (4.6 logits at 100:1).
    return ImbalancePlan(LOGIT_ADJUSTMENT, ratio, f"classes {ratio:.1f}:1, {given.names} as asked; decisions served "
                                                  "as trained, every class weighed alike (--imbalance none keeps "
                                                  "the training's prior)")  # fmt: skip


def decision_ratios(ratios: np.ndarray, counts_before: Sequence[int], plan: ImbalancePlan) -> np.ndarray:
    """The class ratios the served prior correction divides out (its log is subtracted): the
    deliberate reweighting alone (``ratios``: loss weights, resampling), or with logit adjustment
    the whole prior the model trained on (the given shares times that reweighting)."""
    ratios = np.asarray(ratios, dtype=np.float64)
    if not plan.balanced:
        return ratios
    shares = np.maximum(np.asarray(counts_before, dtype=np.float64), 1.0)
    return ratios * shares / shares.sum()
