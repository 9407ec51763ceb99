"""The contrastive first stage for little data: SetFit's pairs, the body trained on them, the head
started from a logistic regression (scikit-learn as the oracle)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from hflabels.training.contrastive import (
    PAIR_BATCH,
    Pair,
    draw_pairs,
    embeddings,
    head_from_regression,
    pair_batches,
    pairs_loss,
    train_on_pairs,
)


def test_pairs_are_drawn_as_setfit_draws_them():
    labels = [0, 0, 0, 1, 1, 2]
    pairs = draw_pairs(labels, iterations=4, seed=3)
    assert pairs == draw_pairs(labels, iterations=4, seed=3)  # seeded
    assert pairs != draw_pairs(labels, iterations=4, seed=4)
    for pair in pairs:
        assert pair.first != pair.second
        assert (labels[pair.first] == labels[pair.second]) == pair.similar
    # Each example, each iteration: one partner of its label where it has one, one of another label.
    firsts = Counter((pair.first, pair.similar) for pair in pairs)
    for index, label in enumerate(labels):
        assert firsts[(index, False)] == 4
        assert firsts[(index, True)] == (4 if labels.count(label) > 1 else 0)


def test_the_steps_hold_every_pair_once_with_pairs_of_alike_length_together():
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(5, 200, 40))
    pairs = draw_pairs([index % 4 for index in range(40)], iterations=10, seed=1)  # 800 pairs
    batches = pair_batches(pairs, lengths, seed=2)
    assert batches == pair_batches(pairs, lengths, seed=2) and batches != pair_batches(pairs, lengths, seed=3)
    assert Counter(pair for batch in batches for pair in batch) == Counter(pairs)  # each pair once, none added
    assert len(batches) == len(pairs) // PAIR_BATCH and {len(batch) for batch in batches} == {PAIR_BATCH}

    def longer(pair: Pair) -> int:
        return max(lengths[pair.first], lengths[pair.second])

    def mean_spread(steps: list[list[Pair]]) -> float:
        return float(np.mean([max(map(longer, step)) - min(map(longer, step)) for step in steps]))

    # Drawn in order, a step's longest and shortest pair differ by most of the range; grouped, by little.
    in_order = [pairs[start : start + PAIR_BATCH] for start in range(0, len(pairs), PAIR_BATCH)]
    assert mean_spread(batches) < mean_spread(in_order) / 4
    # A partial last batch stays: 810 pairs give 51 steps.
    assert sum(map(len, pair_batches(pairs + pairs[:10], lengths, seed=2))) == 810


@pytest.fixture(scope="module")
def classifier(models_root):
    from tiny_models import build_base_encoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = build_base_encoder(models_root / "contrastive_base", initializer_range=0.02)
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def fresh(classes: int):
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=classes).eval()

    return fresh, tokenizer


WORDS = {0: ["wonderful", "friendly", "fantastic", "love"], 1: ["hated", "cold", "bland", "delayed"],
         2: ["paris", "berlin", "london", "amsterdam"]}  # fmt: skip


def keyword_texts(count: int, seed: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    filler = ["the", "was", "and", "it", "in", "our", "new", "today"]
    texts, labels = [], []
    for i in range(count):
        label = i % 3
        words = list(rng.choice(filler, 5)) + [str(rng.choice(WORDS[label]))]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


@pytest.mark.parametrize("classes", [3, 2])
def test_the_head_starts_as_the_logistic_regression_on_what_it_reads(classifier, classes):
    from sklearn.linear_model import LogisticRegression

    fresh, tokenizer = classifier
    model = fresh(classes)
    texts, labels = keyword_texts(30, seed=1)
    labels = [label % classes for label in labels]
    assert head_from_regression(model, tokenizer, texts, labels, 32, classes)
    oracle = LogisticRegression(max_iter=1000).fit(embeddings(model, tokenizer, texts, 32), labels)
    unseen, _ = keyword_texts(12, seed=2)
    with torch.inference_mode():
        logits = model(**tokenizer(unseen, padding=True, return_tensors="pt")).logits.numpy()
    features = embeddings(model, tokenizer, unseen, 32)
    np.testing.assert_allclose(
        torch.softmax(torch.from_numpy(logits), -1).numpy(), oracle.predict_proba(features), atol=1e-5
    )


def test_a_head_of_another_shape_is_left_alone(classifier):
    fresh, tokenizer = classifier
    model = fresh(3)
    before = model.classifier.weight.detach().clone()
    assert not head_from_regression(model, tokenizer, ["a", "b"], [0, 1], 32, 4)
    assert torch.equal(model.classifier.weight, before)


def test_a_step_encodes_each_sentence_once_and_gives_the_loss_of_its_pairs(classifier):
    """The step's loss and gradients equal those of encoding each side of each pair on its own
    (SetFit's way), without dropout, while the encoder sees each sentence once."""
    from hflabels.training.contrastive import _batch, pooled

    fresh, tokenizer = classifier
    model = fresh(3)  # eval mode: no dropout, so both ways are the same function
    texts, labels = keyword_texts(12, seed=4)
    texts[5] = texts[5] + " and the long sentence goes on for several more words"  # padding differs
    chunk = draw_pairs(labels, iterations=3, seed=5)[:PAIR_BATCH]
    rows = []

    def counted(model_, features):
        rows.append(len(features["input_ids"]))
        return pooled(model_, features)

    loss = pairs_loss(model, tokenizer, texts, chunk, 32, counted)
    loss.backward()
    grads = [parameter.grad.clone() for parameter in model.base_model.parameters()]
    model.zero_grad()
    assert rows == [len({pair.first for pair in chunk} | {pair.second for pair in chunk})] and rows[0] < 2 * PAIR_BATCH
    firsts = pooled(model, _batch(tokenizer, [texts[pair.first] for pair in chunk], 32))
    seconds = pooled(model, _batch(tokenizer, [texts[pair.second] for pair in chunk], 32))
    targets = torch.tensor([float(pair.similar) for pair in chunk])
    oracle = torch.nn.functional.mse_loss(torch.cosine_similarity(firsts, seconds), targets)
    oracle.backward()
    torch.testing.assert_close(loss, oracle, rtol=0, atol=1e-6)
    for grad, parameter in zip(grads, model.base_model.parameters()):
        torch.testing.assert_close(grad, parameter.grad, rtol=1e-4, atol=1e-6)


def test_training_on_pairs_fits_the_pairs_objective_and_leaves_the_head(classifier):
    fresh, tokenizer = classifier
    model = fresh(3)
    texts, labels = keyword_texts(24, seed=3)
    pairs = draw_pairs(labels, 20, seed=0)

    def pair_loss() -> float:
        """The stage's objective without dropout: cosine similarity 1 within a label, 0 across."""
        vectors = embeddings(model, tokenizer, texts, 32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        similarity = np.array([vectors[pair.first] @ vectors[pair.second] for pair in pairs])
        return float(np.mean((similarity - np.array([pair.similar for pair in pairs], dtype=float)) ** 2))

    before = pair_loss()
    head = model.classifier.weight.detach().clone()
    # A random tiny model needs a larger step than a pretrained one's 2e-5.
    report = train_on_pairs(model, tokenizer, texts, labels, seed=0, max_length=32, iterations=20, learning_rate=1e-2)
    assert report["pairs"] == len(pairs) == 24 * 20 * 2 and report["steps"] == len(pairs) // PAIR_BATCH
    after = pair_loss()
    assert after < before - 0.05
    assert torch.equal(model.classifier.weight, head)  # the body learns; the head is not touched
    assert not model.training
    capped = fresh(3)
    assert (
        train_on_pairs(capped, tokenizer, texts, labels, seed=0, max_length=32, max_steps=5)["pairs"] == 5 * PAIR_BATCH
    )


def test_the_appended_layer_pools_by_mean_and_the_folder_stays_a_standard_bert(classifier, tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    from hflabels.training.contrastive import _batch
    from hflabels.training.mean_pooling import MEAN_SCALE, append_mean_pooling_layer, can_pool_by_mean, mean_of_states

    fresh, tokenizer = classifier
    model = fresh(3)
    assert can_pool_by_mean(model)
    layers = model.config.num_hidden_layers
    texts = ["the staff were friendly", "cold", "our train to amsterdam was delayed by two hours today"]
    features = _batch(tokenizer, texts, 32)  # padded: the mean must skip the padding
    with torch.no_grad():
        mean = mean_of_states(model, features)
        states = model.base_model(**features).last_hidden_state
        append_mean_pooling_layer(model)
        first = model.base_model(**features).last_hidden_state[:, 0]
        normalised = torch.nn.functional.layer_norm(mean, mean.shape[-1:], eps=model.config.layer_norm_eps)
        # The token's own state is a 1/MEAN_SCALE share of the sum the layer normalises.
        bound = 4 * float(states[:, 0].norm(dim=-1).max() / mean.norm(dim=-1).min()) / MEAN_SCALE
        torch.testing.assert_close(first, normalised, rtol=0, atol=max(bound, 1e-5))
        batched = model(**features).logits
        alone = torch.cat([model(**_batch(tokenizer, [text], 32)).logits for text in texts])
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)
    model.save_pretrained(tmp_path / "pooled")
    tokenizer.save_pretrained(tmp_path / "pooled")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pooled").eval()
    assert type(reloaded).__name__ == "BertForSequenceClassification"
    assert reloaded.config.num_hidden_layers == layers + 1
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**features).logits, batched, rtol=0, atol=0)
    answers = pipeline("text-classification", model=str(tmp_path / "pooled"), top_k=None)(texts)
    expected = torch.softmax(batched, -1)
    for answer, row in zip(answers, expected):
        for item in answer:
            assert abs(item["score"] - float(row[reloaded.config.label2id[item["label"]]])) <= 1e-5
