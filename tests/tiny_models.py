"""Tiny models with random weights and tokenizers made from a few sentences, built into a folder.

Nothing is downloaded: tokenizers are built here with ``tokenizers`` (a WordPiece vocabulary from
the corpus' words, a byte-level BPE trained on it), weights are random with a fixed seed, and the
folder is what ``save_pretrained`` writes, safetensors included. Every build is identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

CORPUS = [
    "The service was wonderful and the staff were friendly.",
    "I hated the food, it was cold and bland.",
    "The package arrived on Tuesday in Paris.",
    "Alice Johnson works for Acme Corporation in Berlin.",
    "Bob moved to New York City last year with his family.",
    "The weather in London is rainy and grey today.",
    "What a fantastic movie, I would watch it again!",
    "The meeting was fine, nothing special happened.",
    "Marie Curie won the Nobel Prize in Physics and Chemistry.",
    "Our train to Amsterdam was delayed by two hours.",
    "Where was the treaty signed? It was signed in Versailles in 1919.",
    "Customers love the new update, but some find it confusing.",
    "The quick brown fox jumps over the lazy dog.",
    "Transformers read text as tokens and predict labels for them.",
    "Unbelievably, the unexpected outcome surprised everybody involved.",
]

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece_tokenizer(model_max_length: int = 64) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer whose vocabulary is the corpus' words and characters.

    The vocabulary is derived from CORPUS with the tokenizer's own normalizer and pre-tokenizer,
    sorted, so every build gives the same ids (tokenizers' WordPiece trainer does not: its
    tie-breaking varies between runs). Words outside the corpus split into ``##`` characters.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = sorted(
        {word for text in CORPUS for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))}
    )
    characters = sorted({char for word in words for char in word} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocabulary = SPECIAL_TOKENS + characters + ["##" + char for char in characters]
    vocabulary += [word for word in words if word not in vocabulary]
    backend = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocabulary)}, unk_token="[UNK]"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.WordPiece(prefix="##")
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def byte_bpe_tokenizer(model_max_length: int = 128, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=model_max_length,
        model_input_names=["input_ids", "attention_mask"],
    )


def _bert_config(vocab_size: int, **extra: object) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=128,
        # Wider than BERT's 0.02 so random logits differ clearly between labels.
        initializer_range=0.3,
        **extra,
    )


def _label_maps(labels: Sequence[str]) -> dict[str, object]:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def build_sequence_classifier(
    folder: Path,
    labels: Sequence[str] = ("negative", "positive"),
    problem_type: str | None = None,
    default_label_names: bool = False,
    seed: int = 0,
    model_max_length: int = 64,
) -> Path:
    tokenizer = wordpiece_tokenizer(model_max_length)
    torch.manual_seed(seed)
    label_maps = {"num_labels": len(labels)} if default_label_names else _label_maps(labels)
    config = _bert_config(len(tokenizer), problem_type=problem_type, **label_maps)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_token_classifier(
    folder: Path,
    labels: Sequence[str] = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"),
    seed: int = 0,
    model_max_length: int = 64,
) -> Path:
    tokenizer = wordpiece_tokenizer(model_max_length)
    torch.manual_seed(seed)
    BertForTokenClassification(_bert_config(len(tokenizer), **_label_maps(labels))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_question_answerer(folder: Path, seed: int = 0, model_max_length: int = 128) -> Path:
    tokenizer = wordpiece_tokenizer(model_max_length)
    torch.manual_seed(seed)
    BertForQuestionAnswering(_bert_config(len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_causal_lm(folder: Path, seed: int = 0, n_positions: int = 128) -> Path:
    tokenizer = byte_bpe_tokenizer(n_positions)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=n_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.3,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---- models whose answers are known ---------------------------------------------------------
# A BERT with no transformer layers reads each token alone (embedding -> LayerNorm -> head), so
# a head aimed at chosen words answers the same wherever those words stand in a text: a test
# can then ask for an entity or an answer far beyond the model's window and know what to expect.


def _keyword_bert(tokenizer: PreTrainedTokenizerFast, words: Sequence[str], **extra: object) -> BertConfig:
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=max(4, len(words) + 2),
        num_hidden_layers=0,
        num_attention_heads=1,
        intermediate_size=4,
        max_position_embeddings=tokenizer.model_max_length,
        **extra,
    )


def _keyword_vectors(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, words: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Give each word its own embedding direction; return what the embedding LayerNorm makes of it."""
    embeddings = model.bert.embeddings
    with torch.no_grad():
        embeddings.word_embeddings.weight.zero_()
        embeddings.position_embeddings.weight.zero_()
        embeddings.token_type_embeddings.weight.zero_()
        embeddings.LayerNorm.weight.fill_(1.0)
        embeddings.LayerNorm.bias.zero_()
        vectors = {}
        for i, word in enumerate(words):
            token_id = tokenizer.convert_tokens_to_ids(word)
            assert token_id != tokenizer.unk_token_id, f"{word!r} is not a single token of the test tokenizer"
            embeddings.word_embeddings.weight[token_id, i] = 10.0
            vectors[word] = embeddings.LayerNorm(embeddings.word_embeddings.weight[token_id])
    return vectors


def build_keyword_token_classifier(
    folder: Path,
    keyword_labels: dict[str, str],
    labels: Sequence[str] = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC"),
    model_max_length: int = 24,
) -> Path:
    """Tags each keyword (a lower-case single token) with its label and every other token O."""
    tokenizer = wordpiece_tokenizer(model_max_length)
    words = list(keyword_labels)
    model = BertForTokenClassification(_keyword_bert(tokenizer, words, **_label_maps(labels))).eval()
    vectors = _keyword_vectors(model, tokenizer, words)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[labels.index("O")] = 1.0
        for word, label in keyword_labels.items():
            model.classifier.weight[labels.index(label)] += 5.0 * vectors[word]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_keyword_question_answerer(folder: Path, start_word: str, end_word: str, model_max_length: int = 32) -> Path:
    """Answers every question with the span from ``start_word`` to ``end_word`` in the context."""
    tokenizer = wordpiece_tokenizer(model_max_length)
    words = list(dict.fromkeys([start_word, end_word]))
    model = BertForQuestionAnswering(_keyword_bert(tokenizer, words)).eval()
    vectors = _keyword_vectors(model, tokenizer, words)
    with torch.no_grad():
        model.qa_outputs.weight.zero_()
        model.qa_outputs.bias.zero_()
        model.qa_outputs.weight[0] = 5.0 * vectors[start_word]
        model.qa_outputs.weight[1] = 5.0 * vectors[end_word]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_base_encoder(folder: Path, seed: int = 0, initializer_range: float | None = None) -> Path:
    """A bare tiny BERT encoder with its tokenizer: a base model for fine-tuning tests
    (``initializer_range`` 0.02, BERT's own, for one that learns quickly)."""
    from transformers import BertModel

    tokenizer = wordpiece_tokenizer(64)
    torch.manual_seed(seed)
    extra = {} if initializer_range is None else {"initializer_range": initializer_range}
    config = _bert_config(len(tokenizer))
    for name, value in extra.items():
        setattr(config, name, value)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_keyword_sequence_classifier(
    folder: Path,
    keyword: str,
    labels: Sequence[str] = ("negative", "neutral", "positive"),
    keyword_label: str = "positive",
    default_label: str = "neutral",
    model_max_length: int = 32,
) -> Path:
    """Answers ``keyword_label`` for a window holding ``keyword`` and ``default_label`` otherwise.

    One attention layer with zero queries and keys attends uniformly, so the [CLS] position
    receives the mean of the window's token vectors: the keyword's direction when it is there,
    nothing when it is not; the pooler and classifier read that direction."""
    tokenizer = wordpiece_tokenizer(model_max_length)
    config = _keyword_bert(tokenizer, [keyword], **_label_maps(labels))
    config.num_hidden_layers = 1
    config.intermediate_size = 4
    model = BertForSequenceClassification(config).eval()
    vectors = _keyword_vectors(model, tokenizer, [keyword])
    size = config.hidden_size
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():
        for linear in (layer.attention.self.query, layer.attention.self.key, layer.intermediate.dense,
                       layer.output.dense):  # fmt: skip
            linear.weight.zero_()
            linear.bias.zero_()
        for linear in (layer.attention.self.value, layer.attention.output.dense, model.bert.pooler.dense):
            linear.weight.copy_(torch.eye(size))
            linear.bias.zero_()
        for norm in (layer.attention.output.LayerNorm, layer.output.LayerNorm):
            norm.weight.fill_(1.0)
            norm.bias.zero_()
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[labels.index(default_label)] = 1.0
        model.classifier.weight[labels.index(keyword_label)] = 4.0 * torch.sign(vectors[keyword])
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
