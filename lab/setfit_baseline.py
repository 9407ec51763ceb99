"""SetFit (Tunstall et al. 2022: contrastive fine-tuning of a sentence-transformer on pairs, then a
logistic-regression head) on a small training CSV, scored on a test CSV: the few-shot baseline of
``python -m lab small-data``. It runs in .venv-setfit (``make setfit``: setfit pins transformers 4.x),
so it imports nothing of the product.

    .venv-setfit/bin/python -m lab.setfit_baseline --train T.csv --test T.csv --seed 1 \\
        --base-model DIR --output DIR        # writes DIR/setfit.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

# The SetFit paper's setting: 20 pair iterations a sentence, one epoch, batch 16 (num_iterations
# bounds the pairs: setfit 1.x's default oversampling draws every pair, too slow past 50 a label on CPU).
PAIR_ITERATIONS = 20
BATCH_SIZE = 16


def read(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    return [row["text"] for row in rows], [row["label"] for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--base-model", type=Path, required=True, help="a sentence-transformers folder")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import f1_score

    texts, labels = read(args.train)
    test_texts, test_labels = read(args.test)
    model = SetFitModel.from_pretrained(str(args.base_model), local_files_only=True)
    training = TrainingArguments(output_dir=str(args.output / "checkpoints"), batch_size=BATCH_SIZE, num_epochs=1,
                                 num_iterations=PAIR_ITERATIONS, seed=args.seed, report_to="none",
                                 show_progress_bar=False, save_strategy="no")  # fmt: skip
    trainer = Trainer(model=model, args=training, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
    trainer.train()
    predicted = [str(label) for label in model.predict(test_texts)]
    score = f1_score(test_labels, predicted, labels=sorted(set(labels)), average="macro")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "setfit.json").write_text(json.dumps({"f1_macro": float(score), "train_examples": len(texts)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
