"""Synthetic minority examples: written by a local causal LM, admitted to training only after checks.

``generate`` (``hflabels augment``) prompts a local causal LM folder once per wanted example with a
few real examples of the class and keeps the first line it writes. ``admit`` (``hflabels train
--synthetic FILE``) adds such examples to the *training* split only: each is dropped if its text
(case and spacing folded) is already in any split, or if a first model trained on the real data
does not give it the intended label with at least ``min_score`` (the label-consistency filter).
Quality depends on the generator: none ships offline here, so the tests check the mechanics with a
tiny LM and the filter with a classifier built to reject.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hflabels.training.data import DataError, Example

SYNTHETIC_TASKS = ("single_label", "sentence_pair")
PROMPT = "Examples of {label} sentences:\n{examples}\n- "


def folded(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


@dataclass(frozen=True)
class Admission:
    added: list[Example]
    counts: dict[str, Any]


def admit(
    synthetic: Sequence[Example],
    splits: Sequence[Sequence[Example]],
    intended_score: Callable[[Sequence[Example]], list[float]],
    min_score: float,
) -> Admission:
    """The synthetic examples to add to training: not a duplicate of any split (or of each other),
    and scored at least ``min_score`` for their own label by ``intended_score`` (a first model)."""
    seen = {
        folded(example.text or "") + "\t" + folded(example.text_pair or "") for split in splits for example in split
    }
    unique: list[Example] = []
    duplicates = 0
    for example in synthetic:
        key = folded(example.text or "") + "\t" + folded(example.text_pair or "")
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        unique.append(example)
    scores = intended_score(unique) if unique else []
    added = [example for example, score in zip(unique, scores) if score >= min_score]
    return Admission(
        added,
        {
            "given": len(synthetic),
            "duplicates_removed": duplicates,
            "rejected_by_filter": len(unique) - len(added),
            "added": len(added),
            "added_per_label": dict(Counter(example.label for example in added)),
            "min_score": min_score,
        },
    )


def rare_labels(examples: Sequence[Example], wanted: Sequence[str] | None) -> list[str]:
    """The classes to write for: those asked for, else every class below the largest's half."""
    counts = Counter(example.label for example in examples)
    if wanted:
        unknown = sorted(set(wanted) - set(counts))
        if unknown:
            raise DataError(f"--classes {', '.join(unknown)} not in the training data (labels: {sorted(counts)})")
        return list(wanted)
    largest = max(counts.values())
    return sorted(label for label, count in counts.items() if count < largest / 2)


def generate(
    generator: Path,
    examples: Sequence[Example],
    labels: Sequence[str],
    per_class: int,
    seed: int,
    shots: int = 4,
    max_new_tokens: int = 40,
) -> list[Example]:
    """``per_class`` new sentences per label, each from a few-shot prompt of real ones (sampled, seeded)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(generator, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(generator, local_files_only=True).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rng = random.Random(seed)
    torch.manual_seed(seed)
    positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 1024)
    # A prompt too long for the model keeps its end: the open "- " the model continues.
    prompt_limit = max(1, positions - max_new_tokens)
    written: list[Example] = []
    for label in labels:
        pool = [example.text for example in examples if example.label == label and example.text]
        for _ in range(per_class):
            shown = rng.sample(pool, min(shots, len(pool)))
            prompt = PROMPT.format(label=label, examples="\n".join(f"- {text}" for text in shown))
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"][:, -prompt_limit:]
            encoded = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            with torch.inference_mode():
                output = model.generate(**encoded, do_sample=True, top_p=0.95, max_new_tokens=max_new_tokens,
                                        pad_token_id=pad)  # fmt: skip
            text = tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
            line = text.split("\n", 1)[0].strip()
            if line:
                written.append(Example(text=line, label=label))
    return written
