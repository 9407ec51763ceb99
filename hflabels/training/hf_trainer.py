"""transformers' Trainer as the recipe runs it: the loss weighted per class or focal, the
TrainingArguments (evaluated and checkpointed every epoch, the best epoch kept), the per-epoch
clock and history, and the checkpoints it leaves."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from handler.api.tasks import Objective
from hflabels.training.evaluation import IGNORED, ListDataset, epoch_metrics
from hflabels.training.losses import focal_loss, logit_adjusted_loss, sigmoid_focal_loss
from hflabels.training.metrics import LOWER_IS_BETTER
from hflabels.training.options import CHECKPOINTS, TrainOptions, chosen_metric, schedule_for


def imbalance_trainer_class(
    task: str, weights: torch.Tensor | None, loss_name: str, gamma: float, log_prior: torch.Tensor | None = None
) -> type:
    from transformers import Trainer

    class ImbalanceTrainer(Trainer):
        """The Trainer, with the loss weighted per class (multi-label: per label's positives), or
        focal with those weights as alpha, or logit-adjusted by the training split's ``log_prior``."""

        def _get_eval_sampler(self, eval_dataset):  # noqa: ANN001, ANN202
            # transformers 5 groups evaluation and predict() batches by length too when training
            # does, and predict() then returns rows in that order, not the dataset's: every
            # prediction would be scored against another example's label. Evaluate in order.
            if eval_dataset is None:
                return None
            return torch.utils.data.SequentialSampler(eval_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            if weights is None and loss_name == "cross_entropy":
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            targets = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits
            if loss_name == "logit_adjusted":
                loss = logit_adjusted_loss(logits, targets, log_prior)
            elif loss_name == "focal":
                focal = sigmoid_focal_loss if task == Objective.MULTI_LABEL else focal_loss
                loss = focal(logits, targets, gamma, weights)
            elif task == Objective.MULTI_LABEL:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, targets.float(), pos_weight=weights.to(logits.device)
                )
            else:
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), weight=weights.to(logits.device),
                    ignore_index=IGNORED,
                )  # fmt: skip
            return (loss, outputs) if return_outputs else loss

    return ImbalanceTrainer


def training_arguments(options: TrainOptions, checkpoints: Path, metric: str) -> Any:
    """The TrainingArguments of the recipe, in the spelling of transformers 5 (``warmup_ratio``,
    ``logging_dir`` and ``group_by_length`` are refused there: ``warmup_steps`` below 1 is a
    fraction of the steps, and ``train_sampling_strategy`` groups by length)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=options.epochs,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=options.learning_rate,
        weight_decay=0.01,
        warmup_steps=0.1,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=metric not in LOWER_IS_BETTER,
        # The best epoch and the last one (to resume from): optimizer states are large.
        save_total_limit=2,
        train_sampling_strategy="group_by_length" if options.group_by_length else "random",
        bf16=options.bf16,
        # Without a GPU the Trainer refuses bf16 unless told it runs on the CPU.
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        seed=options.seed,
        data_seed=options.seed,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Trainer's progress bar on a terminal; plain lines (EpochReport) otherwise.
        disable_tqdm=options.quiet or not sys.stderr.isatty(),
    )


class EpochClock:
    """Times each epoch's training (evaluation excluded) and hands the finished rows on."""

    def __init__(
        self, examples: int, report: Callable[[dict[str, Any]], None] | None, metrics: Sequence[str] = ()
    ) -> None:
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                clock.started = time.perf_counter()

            def on_epoch_end(self, args, state, control, **kwargs):  # noqa: ANN001
                clock.seconds[round(state.epoch or 0.0)] = time.perf_counter() - clock.started

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
                if report is not None and metrics is not None:
                    epoch = round(state.epoch or 0.0)
                    figures = {k.removeprefix("eval_"): v for k, v in metrics.items() if k.removeprefix("eval_")
                               in clock.reported}  # fmt: skip
                    report({"epoch": epoch, **figures, "seconds": clock.seconds.get(epoch)})

        self.examples = examples
        self.reported = ("loss", *metrics)
        self.started = time.perf_counter()
        self.seconds: dict[int, float] = {}
        self.callback = Callback()


def epoch_history(log_history: Sequence[dict[str, Any]], clock: EpochClock, metrics: Sequence[str]) -> list[dict]:
    """One row per epoch: training loss, validation loss and metrics, seconds and examples/s."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        epoch = round(entry.get("epoch", 0.0))
        row = rows.setdefault(epoch, {"epoch": epoch})
        if "loss" in entry:
            row["train_loss"] = round(float(entry["loss"]), 6)
        if "eval_loss" in entry:
            row["validation_loss"] = round(float(entry["eval_loss"]), 6)
            for name in metrics:
                if f"eval_{name}" in entry:
                    row[name] = round(float(entry[f"eval_{name}"]), 6)
    for epoch, row in rows.items():
        seconds = clock.seconds.get(epoch)
        if seconds:
            row["seconds"] = round(seconds, 4)
            row["examples_per_second"] = round(clock.examples / seconds, 1)
    return [rows[epoch] for epoch in sorted(rows) if epoch > 0 and len(rows[epoch]) > 1]


def build_trainer(
    options: TrainOptions,
    model: Any,
    tokenizer: Any,
    labels: Sequence[str],
    train_features: list[dict[str, Any]],
    validation_features: list[dict[str, Any]],
    loss_weights: torch.Tensor | None,
    callbacks: Sequence[Any] = (),
    log_prior: torch.Tensor | None = None,
) -> Any:
    """The exact Trainer ``train`` runs (a test builds it against the installed transformers);
    ``log_prior``: the training split's log class shares, for the logit-adjusted loss."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding, EarlyStoppingCallback

    options, _ = schedule_for(options, len(train_features))  # epochs and rate left to the recipe
    task = Objective(options.task)
    metric = chosen_metric(task, options.metric)
    checkpoints = options.output / CHECKPOINTS
    collator_class = (
        DataCollatorForTokenClassification if task == Objective.TOKEN_CLASSIFICATION else DataCollatorWithPadding
    )
    every_callback = list(callbacks)
    if options.early_stopping_patience is not None:
        every_callback.append(EarlyStoppingCallback(early_stopping_patience=options.early_stopping_patience))

    def compute_metrics(prediction: Any) -> dict[str, float]:
        return epoch_metrics(task, labels, prediction.predictions, prediction.label_ids)

    trainer = imbalance_trainer_class(task, loss_weights, options.loss, options.focal_gamma, log_prior)(
        model=model,
        args=training_arguments(options, checkpoints, metric),
        train_dataset=ListDataset(train_features),
        eval_dataset=ListDataset(validation_features),
        data_collator=collator_class(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=every_callback,
    )
    if trainer.args.disable_tqdm:
        from transformers.trainer_callback import PrinterCallback

        # Its raw log dictionaries; EpochClock's report says the same once per epoch, readably.
        trainer.remove_callback(PrinterCallback)
    return trainer


def best_epoch_of(best_checkpoint: str | None, log_history: Sequence[dict[str, Any]]) -> int | None:
    """The epoch whose checkpoint (``checkpoint-STEP``) the Trainer kept as best."""
    if best_checkpoint is None:
        return None
    step = int(Path(best_checkpoint).name.split("-")[-1])
    return next(
        (round(entry["epoch"]) for entry in log_history if entry.get("step") == step and "epoch" in entry), None
    )


def last_checkpoint(checkpoints: Path) -> Path | None:
    found = [path for path in checkpoints.glob("checkpoint-*") if path.name.split("-")[-1].isdigit()]
    return max(found, key=lambda path: int(path.name.split("-")[-1])) if found else None
