"""Training losses for class imbalance: focal loss (Lin et al. 2017), written with log_softmax so
p_t is the model's probability of the true class whether or not class weights are on; and the
logit-adjusted loss (Menon et al. 2021)."""

from __future__ import annotations

import torch
from torch.nn import functional

IGNORE_INDEX = -100


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float, alpha: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over targets (``IGNORE_INDEX`` skipped) of ``-alpha_t (1 - p_t)^gamma log p_t``;
    gamma 0 and no alpha is cross-entropy, gamma 0 with alpha is weighted cross-entropy's
    per-example term (averaged over examples, not over weights)."""
    logits = logits.reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1)
    keep = targets != IGNORE_INDEX
    logits, targets = logits[keep], targets[keep]
    log_pt = functional.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None]).squeeze(1)
    loss = -((1.0 - log_pt.exp()) ** gamma) * log_pt
    if alpha is not None:
        loss = alpha.to(loss.device)[targets] * loss
    return loss.mean()


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float, alpha: torch.Tensor | None = None
) -> torch.Tensor:
    """Multi-label: per label, ``-[alpha y (1-p)^gamma log p + (1-y) p^gamma log(1-p)]``, averaged;
    ``alpha`` weighs each label's positives (as BCE's pos_weight does)."""
    targets = targets.float()
    log_p = functional.logsigmoid(logits.float())
    log_not_p = functional.logsigmoid(-logits.float())
    positive = targets * (1.0 - log_p.exp()) ** gamma * log_p
    if alpha is not None:
        positive = alpha.to(positive.device) * positive
    negative = (1.0 - targets) * log_p.exp() ** gamma * log_not_p
    return -(positive + negative).mean()


def logit_adjusted_loss(logits: torch.Tensor, targets: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """Menon et al. 2021's logit-adjusted cross-entropy (tau 1): cross-entropy of ``logits +
    log_prior``. The model's own logits then estimate the class likelihoods with every class weighed
    alike (the balanced error's Bayes rule), so its argmax is the balanced decision; adding
    ``log_prior`` back gives the posterior under the training prior."""
    logits = logits.reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1)
    return functional.cross_entropy(
        logits.float() + log_prior.to(logits.device, torch.float32), targets, ignore_index=IGNORE_INDEX
    )
