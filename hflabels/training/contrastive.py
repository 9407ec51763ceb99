"""SetFit (Tunstall et al. 2022) as the small-data recipe, written as a standard classifier.

SetFit fine-tunes the sentence encoder on pairs of training sentences (same label: cosine
similarity 1, different labels: 0), then fits a logistic regression on the mean-pooled embeddings.
The folder ``hflabels train`` writes must stay a standard ``...ForSequenceClassification`` (the
handler serves it with pipeline parity), whose head reads the pooled first token. So: the body is
trained on pairs of its mean-pooled states, one layer that pools by mean is appended (BERT models,
mean_pooling.py), and the head is the logistic regression on what the pooler then gives
(``head_from_regression``). Other architectures train on pairs of what their head reads.

Pairs are drawn as SetFit draws them: for each sentence, ``iterations`` times, one partner of its
label and one of another label, seeded. Two things make the stage 2.4x faster than SetFit's way
on 2 cores (48 NYT sentences: 106 s to 45 s): a step encodes each of its sentences once, in one
pass (``pairs_loss``: the same loss), and a step holds pairs of alike length (``pair_batches``), so
it pads little and, the pairs of a long sentence falling together, holds fewer distinct sentences.
The price of the second, measured on NYT at 20 a label against SetFit's drawn order: about 0.01
macro-F1 (steps are less varied); encoding each sentence once without it was 1.4x faster and
scored as SetFit's order did (docs: training/recipe.md).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# SetFit's defaults: 20 pair iterations a sentence, batch 16, body learning rate 2e-5, one epoch.
PAIR_ITERATIONS = 20
PAIR_BATCH = 16
BODY_LEARNING_RATE = 2e-5
# A bound on the stage's optimisation steps, so that it stays a minute or less on 2 cores.
MAX_PAIR_STEPS = 300


@dataclass(frozen=True)
class Pair:
    first: int
    second: int
    similar: bool


def draw_pairs(labels: Sequence[int], iterations: int, seed: int) -> list[Pair]:
    """For each example, ``iterations`` times: a partner of its label (where it has one) and one of another."""
    rng = random.Random(seed)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(label, []).append(index)
    pairs: list[Pair] = []
    for _ in range(iterations):
        for index, label in enumerate(labels):
            same = [other for other in members[label] if other != index]
            if same:
                pairs.append(Pair(index, rng.choice(same), True))
            others = [other for key, group in members.items() if key != label for other in group]
            if others:
                pairs.append(Pair(index, rng.choice(others), False))
    rng.shuffle(pairs)
    return pairs


def pair_batches(pairs: Sequence[Pair], lengths: Sequence[int], seed: int, group: int = 16) -> list[list[Pair]]:
    """The steps' batches of ``PAIR_BATCH`` pairs: pairs of alike length together, so a step pads
    little and holds fewer distinct sentences, and the batches in a seeded random order (as
    transformers' group_by_length does: pairs are sorted by their longer sentence within runs of
    ``group`` batches of the shuffled list)."""
    span = group * PAIR_BATCH
    batches = []
    for start in range(0, len(pairs), span):
        run = sorted(pairs[start : start + span], key=lambda pair: max(lengths[pair.first], lengths[pair.second]))
        batches += [run[at : at + PAIR_BATCH] for at in range(0, len(run), PAIR_BATCH)]
    random.Random(seed).shuffle(batches)
    return batches


Embed = Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]


def pooled(model: Any, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """What the classification head reads: the pooler's output where the model has one, else the first token."""
    outputs = model.base_model(**features)
    pooler_output = getattr(outputs, "pooler_output", None)
    return pooler_output if pooler_output is not None else outputs.last_hidden_state[:, 0]


def _batch(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    return dict(tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt"))


def pairs_loss(model: Any, tokenizer: Any, texts: Sequence[str], chunk: Sequence[Pair], max_length: int,
               embed: Embed = pooled) -> torch.Tensor:  # fmt: skip
    """SetFit's loss on one step's pairs: the mean squared gap between each pair's cosine similarity
    and 1 (same label) or 0. Each sentence of the step is encoded once in one pass, however many of
    its pairs hold it."""
    unique = sorted({pair.first for pair in chunk} | {pair.second for pair in chunk})
    row = {index: position for position, index in enumerate(unique)}
    vectors = embed(model, _batch(tokenizer, [texts[index] for index in unique], max_length))
    firsts = vectors[[row[pair.first] for pair in chunk]]
    seconds = vectors[[row[pair.second] for pair in chunk]]
    targets = torch.tensor([1.0 if pair.similar else 0.0 for pair in chunk], dtype=vectors.dtype)
    return torch.nn.functional.mse_loss(torch.cosine_similarity(firsts, seconds), targets)


def train_on_pairs(
    model: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[int], seed: int, max_length: int,
    iterations: int = PAIR_ITERATIONS, max_steps: int = MAX_PAIR_STEPS, learning_rate: float = BODY_LEARNING_RATE,
    embed: Embed = pooled,
) -> dict[str, Any]:  # fmt: skip
    """One epoch of cosine-similarity loss between the ``embed`` vectors of drawn pairs, the body's
    weights updated in place."""
    started = time.perf_counter()
    pairs = draw_pairs(labels, iterations, seed)[: max_steps * PAIR_BATCH]
    steps = math.ceil(len(pairs) / PAIR_BATCH)
    body = model.base_model
    optimizer = torch.optim.AdamW(body.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(1, steps - warmup)))
    )
    torch.manual_seed(seed)
    model.train()
    losses = []
    for chunk in pair_batches(pairs, [len(text) for text in texts], seed):
        loss = pairs_loss(model, tokenizer, texts, chunk, max_length, embed)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return {"pairs": len(pairs), "steps": steps, "first_loss": round(losses[0], 4) if losses else None,
            "last_loss": round(float(np.mean(losses[-10:])), 4) if losses else None,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


@torch.inference_mode()
def embeddings(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, embed: Embed = pooled) -> np.ndarray:
    model.eval()
    rows = [embed(model, _batch(tokenizer, texts[start : start + 64], max_length)).float().numpy()
            for start in range(0, len(texts), 64)]  # fmt: skip
    return np.concatenate(rows)


def head_from_regression(model: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[int], max_length: int,
                         classes: int) -> bool:  # fmt: skip
    """Start the head from a multinomial logistic regression on the pooled representation
    (SetFit's second stage); False where the head is not one linear layer on it."""
    from sklearn.linear_model import LogisticRegression

    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear) or head.out_features != classes:
        return False
    features = embeddings(model, tokenizer, texts, max_length)
    regression = LogisticRegression(max_iter=1000).fit(features, np.asarray(labels))
    coef, intercept = regression.coef_, regression.intercept_
    if classes == 2 and coef.shape[0] == 1:  # scikit-learn's binary form: one row for class 1
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    order = list(regression.classes_)
    weight = np.zeros((classes, features.shape[1]), dtype=np.float32)
    bias = np.zeros(classes, dtype=np.float32)
    for row, label in enumerate(order):
        weight[int(label)], bias[int(label)] = coef[row], intercept[row]
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
    return True


def first_stage(
    model: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[int], classes: int, seed: int, max_length: int
) -> dict[str, Any]:
    """SetFit's two stages on ``model`` in place: pairs, (BERT) the mean-pooling layer, the head."""
    from hflabels.training.mean_pooling import append_mean_pooling_layer, can_pool_by_mean, mean_of_states

    by_mean = can_pool_by_mean(model)
    report = train_on_pairs(
        model, tokenizer, texts, labels, seed, max_length, embed=mean_of_states if by_mean else pooled
    )
    if by_mean:
        append_mean_pooling_layer(model)
    report["pooling"] = "mean (an appended layer)" if by_mean else "the model's own"
    report["head_from_regression"] = head_from_regression(model, tokenizer, texts, labels, max_length, classes)
    return report
