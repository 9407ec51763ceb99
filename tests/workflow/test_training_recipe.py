"""The training recipe at scale: evaluated every epoch, best epoch kept, early stopping, resume
after a kill, length-grouped batches, bf16 detection, regression served like the pipeline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from support import call_one, load_handler, script
from training_datasets import keyword_scores, keyword_sentiment

from handler.engine.execution import cpu_flags, fast_bfloat16
from hflabels.training.data import DataError
from hflabels.training.trainer import TrainOptions, build_trainer, train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base(models_root):
    from tiny_models import build_base_encoder

    return build_base_encoder(models_root / "recipe_base", initializer_range=0.02)


@pytest.fixture(scope="module")
def keyword_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe-data")
    (root / "train.csv").write_text(keyword_sentiment(1200, seed=1))
    (root / "validation.csv").write_text(keyword_sentiment(60, seed=2))
    (root / "test.csv").write_text(keyword_sentiment(60, seed=3))
    return root


def options(data: Path, base: Path, output: Path, **overrides) -> TrainOptions:
    defaults = dict(task="single_label", train=data / "train.csv", validation=data / "validation.csv",
                    output=output, base_model=base, epochs=3, batch_size=16, learning_rate=1e-2)  # fmt: skip
    return TrainOptions(**{**defaults, **overrides})


# ---- the exact Trainer, against the installed transformers -----------------------------------------


def test_the_trainer_is_built_with_arguments_this_transformers_accepts(base, keyword_data, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=3)
    features = [dict(tokenizer(text), labels=i % 3) for i, text in enumerate(["a b", "the room was", "c"] * 4)]
    chosen = options(keyword_data, base, tmp_path / "out", early_stopping_patience=2, metric="accuracy")
    trainer = build_trainer(chosen, model, tokenizer, ["negative", "neutral", "positive"], features, features, None)
    args = trainer.args
    assert (args.eval_strategy, args.save_strategy, args.logging_strategy) == ("epoch", "epoch", "epoch")
    assert args.load_best_model_at_end and args.metric_for_best_model == "accuracy" and args.greater_is_better
    assert args.train_sampling_strategy == "group_by_length" and args.save_total_limit == 2
    assert args.output_dir == str(tmp_path / "out" / "checkpoints")
    assert any(type(c).__name__ == "EarlyStoppingCallback" for c in trainer.callback_handler.callbacks)
    # transformers 5 would group (and reorder) predict()'s rows by length too: ours stay in order.
    assert isinstance(trainer._get_eval_sampler(trainer.eval_dataset), torch.utils.data.SequentialSampler)
    order = trainer.predict(trainer.eval_dataset).label_ids
    np.testing.assert_array_equal(order, [i % 3 for i in range(12)])


def test_an_unknown_metric_is_refused_with_the_offered_ones(base, keyword_data, tmp_path):
    with pytest.raises(DataError, match="--metric recall is not reported for single_label; choose one of f1_macro"):
        train(options(keyword_data, base, tmp_path / "out", metric="recall"))


# ---- every epoch evaluated, the best kept, early stopping ---------------------------------------


def test_every_epoch_is_evaluated_and_the_best_epoch_is_the_one_saved(base, keyword_data, tmp_path):
    output = tmp_path / "out"
    reported: list[dict] = []
    results = train(options(keyword_data, base, output, epochs=3, keep_checkpoints=True), reported.append)
    history, recipe = results["history"], results["recipe"]
    assert [row["epoch"] for row in history] == [1, 2, 3] == [row["epoch"] for row in reported]
    for row in history:
        assert {"train_loss", "validation_loss", "f1_macro", "accuracy", "seconds", "examples_per_second"} <= set(row)
        assert row["examples_per_second"] == pytest.approx(1200 / row["seconds"], rel=0.02)
    scores = [row["f1_macro"] for row in history]
    best = int(np.argmax(scores))  # the first of equals, as the Trainer keeps it
    assert recipe["best_epoch"] == history[best]["epoch"] and recipe["best_metric"] == pytest.approx(scores[best])
    assert max(scores) > 0.9, f"the keyword is learnable: {scores}"
    # The saved weights are the best epoch's checkpoint, not the last epoch's.
    steps_per_epoch = 1200 // 16
    best_checkpoint = output / "checkpoints" / f"checkpoint-{recipe['best_epoch'] * steps_per_epoch}"
    kept = load_file(best_checkpoint / "model.safetensors")
    saved = load_file(output / "model.safetensors")
    assert all(torch.equal(kept[name], saved[name]) for name in saved)
    if recipe["best_epoch"] != 3:
        last = load_file(output / "checkpoints" / f"checkpoint-{3 * steps_per_epoch}" / "model.safetensors")
        assert not all(torch.equal(last[name], saved[name]) for name in saved)
    # ... and the validation metrics written are that model's (calibration keeps decisions here).
    assert results["validation"]["calibration"]["uncalibrated"]["f1_macro"] == pytest.approx(scores[best], abs=1e-6)


def test_early_stopping_ends_a_run_that_stopped_improving(base, keyword_data, tmp_path):
    # A learning rate too small to change any decision: the metric never improves after epoch 1.
    results = train(options(keyword_data, base, tmp_path / "out", epochs=6, learning_rate=1e-12,
                            early_stopping_patience=2))  # fmt: skip
    assert results["recipe"]["epochs_run"] == 3 and results["recipe"]["best_epoch"] == 1
    assert not (tmp_path / "out" / "checkpoints").exists(), "checkpoints are removed after a finished run"


# ---- resume after a kill -----------------------------------------------------------------------------


def train_command(data: Path, base: Path, output: Path, *extra: str) -> list[str]:
    return [str(Path(sys.executable).with_name("hflabels")), "train", "--task", "single_label",
            "--train", str(data / "big.csv"), "--validation", str(data / "validation.csv"), "--output", str(output),
            "--base-model", str(base), "--epochs", "3", "--batch-size", "4", "--learning-rate", "1e-2",
            "--no-calibration", *extra]  # fmt: skip


def test_a_run_killed_in_its_second_epoch_resumes_to_the_same_model(base, keyword_data, tmp_path):
    (keyword_data / "big.csv").write_text(keyword_sentiment(1600, seed=4))
    environment = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    whole = tmp_path / "whole"
    subprocess.run(train_command(keyword_data, base, whole), check=True, capture_output=True, env=environment)

    killed = tmp_path / "killed"
    first_epoch = killed / "checkpoints" / "checkpoint-400"
    run = subprocess.Popen(train_command(keyword_data, base, killed), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=environment)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (first_epoch / "trainer_state.json").exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the second epoch
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "metrics.json").exists() and first_epoch.exists()
    assert not (killed / "checkpoints" / "checkpoint-1200").exists()

    resumed = subprocess.run(train_command(keyword_data, base, killed, "--resume"), capture_output=True, text=True,
                             env=environment)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole_metrics = json.loads((whole / "metrics.json").read_text())
    resumed_metrics = json.loads((killed / "metrics.json").read_text())
    assert resumed_metrics["recipe"]["resumed_from"] in ("checkpoint-400", "checkpoint-800")
    drop = ("seconds", "examples_per_second")
    strip = lambda rows: [{k: v for k, v in row.items() if k not in drop} for row in rows]  # noqa: E731
    assert strip(resumed_metrics["history"]) == strip(whole_metrics["history"])
    assert resumed_metrics["validation"] == whole_metrics["validation"]
    expected, got = load_file(whole / "model.safetensors"), load_file(killed / "model.safetensors")
    assert all(torch.equal(expected[name], got[name]) for name in expected), "resumed weights differ"


def test_resume_without_a_checkpoint_says_so(base, keyword_data, tmp_path, capsys):
    argv = ["--task", "single_label", "--train", str(keyword_data / "train.csv"), "--output", str(tmp_path / "o"),
            "--base-model", str(base), "--resume"]  # fmt: skip
    assert script("train")(argv) == 2
    assert "--resume: no checkpoint in" in capsys.readouterr().err


# ---- bf16: detected, never assumed -------------------------------------------------------------


def test_bf16_units_are_detected_from_the_cpu_flags():
    cpu = torch.device("cpu")
    assert fast_bfloat16(cpu, frozenset({"avx2", "fma"})) is None
    assert fast_bfloat16(cpu, frozenset({"avx512f", "avx512_bf16"})) == "avx512_bf16"
    assert fast_bfloat16(cpu, frozenset({"amx_bf16", "avx512_bf16"})) == "amx_bf16, avx512_bf16"
    assert "avx2" in cpu_flags("processor\t: 0\nflags\t\t: fpu avx2 sse\n")
    assert cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}


def test_bf16_training_is_refused_without_bf16_units(base, keyword_data, tmp_path, monkeypatch):
    import hflabels.training.options as options_module

    monkeypatch.setattr(options_module, "fast_bfloat16", lambda device: None)
    with pytest.raises(DataError, match="--bf16: this CPU has no bf16 units"):
        train(options(keyword_data, base, tmp_path / "out", bf16=True))


@pytest.mark.skipif(fast_bfloat16(torch.device("cpu")) is None, reason="this CPU has no bf16 units")
def test_bf16_training_runs_where_the_cpu_has_bf16_units(base, keyword_data, tmp_path):
    results = train(options(keyword_data, base, tmp_path / "out", bf16=True, epochs=2))
    assert results["recipe"]["bf16"] is True and len(results["history"]) == 2
    assert max(row["f1_macro"] for row in results["history"]) > 0.9


# ---- regression -------------------------------------------------------------------------------------


def test_regression_is_trained_reported_and_served_as_the_pipelines_raw_score(base, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    data = tmp_path / "scores.csv"
    data.write_text(keyword_scores(800, seed=5))
    output = tmp_path / "regressor"
    argv = ["--task", "regression", "--train", str(data), "--output", str(output), "--base-model", str(base),
            "--epochs", "3", "--batch-size", "16", "--learning-rate", "3e-3"]  # fmt: skip
    assert script("train")(argv) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert {"pearson", "spearman", "mse"} <= set(metrics["validation"]) and metrics["recipe"]["metric"] == "spearman"
    assert metrics["validation"]["spearman"] > 0.5, metrics["validation"]
    handler, context = load_handler(output)
    texts = ["wonderful wonderful the food", "cold cold cold", "the package"]
    reference = pipeline("text-classification", model=AutoModelForSequenceClassification.from_pretrained(output),
                         tokenizer=AutoTokenizer.from_pretrained(output))  # fmt: skip
    for text in texts:
        status, answer = call_one(handler, context, {"inputs": text})
        [expected] = reference(text)
        assert status == 200 and set(answer) == {"score"}
        assert answer["score"] == pytest.approx(expected["score"], abs=1e-5)
    assert (
        call_one(handler, context, {"inputs": "wonderful wonderful wonderful"})[1]["score"]
        > call_one(handler, context, {"inputs": "cold cold cold"})[1]["score"]
    )


def test_small_data_gets_enough_optimisation_steps_unless_the_schedule_is_given():
    from hflabels.training.options import schedule_for

    small = TrainOptions(task="single_label", train=Path("t.csv"), output=Path("o"))
    settled, why = schedule_for(small, 48)  # 3 steps an epoch: 8 epochs would be 24 steps
    assert (settled.epochs, settled.learning_rate) == (20.0, 1e-4) and "small data (48 training examples" in why
    settled, why = schedule_for(small, 608)  # 38 steps an epoch: 304 steps at the defaults
    assert (settled.epochs, settled.learning_rate) == (8.0, 5e-5) and "small data" not in why
    given = TrainOptions(task="single_label", train=Path("t.csv"), output=Path("o"), epochs=3, learning_rate=2e-5)
    assert schedule_for(given, 48)[0] == given and "as given" in schedule_for(given, 48)[1]
    half = TrainOptions(task="single_label", train=Path("t.csv"), output=Path("o"), epochs=5)
    assert (schedule_for(half, 48)[0].epochs, schedule_for(half, 48)[0].learning_rate) == (5, 1e-4)


def test_the_schedule_the_run_used_is_in_its_metrics(base, keyword_data, tmp_path):
    small = options(keyword_data, base, tmp_path / "out", epochs=None, learning_rate=None, max_train_examples=24,
                    pair_stage="off")  # fmt: skip
    results = train(small)
    recipe = json.loads((tmp_path / "out" / "metrics.json").read_text())["recipe"]
    assert recipe["epochs"] == 20.0 and recipe["learning_rate"] == 1e-4 and "small data" in recipe["schedule"]
    assert results["recipe"]["epochs_run"] == 20


# ---- small data: SetFit's pairs and logistic-regression head instead of fine-tuning ----------------


def test_small_data_is_made_by_the_pair_stage_and_served_like_the_pipeline(base, keyword_data, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    output = tmp_path / "pairs"
    argv = ["--task", "single_label", "--train", str(keyword_data / "train.csv"), "--output", str(output),
            "--base-model", str(base), "--max-train-examples", "60"]  # fmt: skip
    assert script("train")(argv) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    pairs = metrics["recipe"]["pair_stage"]
    assert pairs["run"] and "small data" in pairs["why"] and pairs["pooling"] == "mean (an appended layer)"
    assert pairs["pairs"] == 60 * 20 * 2 and pairs["head_from_regression"]
    assert metrics["recipe"]["epochs_run"] == 0 and "pair stage made the model" in metrics["recipe"]["schedule"]
    assert json.loads((output / "config.json").read_text())["num_hidden_layers"] == (
        json.loads((base / "config.json").read_text())["num_hidden_layers"] + 1
    )
    handler, context = load_handler(output)
    reference = pipeline("text-classification", model=AutoModelForSequenceClassification.from_pretrained(output),
                         tokenizer=AutoTokenizer.from_pretrained(output))  # fmt: skip
    for text in ["wonderful wonderful the food", "cold cold cold", "the package arrived in paris"]:
        status, answer = call_one(handler, context, {"inputs": text})
        # Calibration moves the scores, never the label.
        assert status == 200 and answer["label"] == reference(text)[0]["label"]


def test_the_pair_stage_runs_where_it_is_due_and_refuses_what_it_cannot_run():
    from handler.api.tasks import Objective
    from hflabels.training.options import check_options, pair_stage_for

    def options_(**changes) -> TrainOptions:
        return TrainOptions(**{"task": "single_label", "train": Path("t.csv"), "output": Path("o"), **changes})

    single = Objective.SINGLE_LABEL
    assert pair_stage_for(options_(), single, 48)[0]
    assert not pair_stage_for(options_(), single, 608)[0]  # 304 steps at 8 epochs: fine-tuning
    assert not pair_stage_for(options_(epochs=5), single, 48)[0]  # a schedule given: fine-tuning
    assert not pair_stage_for(options_(pair_stage="off"), single, 48)[0]
    # Loss weights and focal loss shape fine-tuning, which the pairs would silently drop.
    assert "--class-weights" in pair_stage_for(options_(class_weights="inverse"), single, 48)[1]
    assert not pair_stage_for(options_(loss="focal"), single, 48)[0]
    assert pair_stage_for(options_(pair_stage="on"), single, 6000)[0]
    assert "not sentence_pair" in pair_stage_for(options_(), Objective.SENTENCE_PAIR, 48)[1]
    with pytest.raises(DataError, match="drop --epochs"):
        check_options(options_(pair_stage="on", epochs=3), single, torch.device("cpu"))
    with pytest.raises(DataError, match="drop --class-weights"):
        check_options(options_(pair_stage="on", class_weights="inverse"), single, torch.device("cpu"))
    with pytest.raises(DataError, match="not multi_label"):
        check_options(options_(task="multi_label", pair_stage="on"), Objective.MULTI_LABEL, torch.device("cpu"))
