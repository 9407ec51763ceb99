"""Fine-tuning: the pure maths by hand, bad data by file and line, and trained folders served."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from support import script
from tiny_models import build_base_encoder

from hflabels.training.data import DataError, label_names, load_examples, split_held_out
from hflabels.training.metrics import class_weights, f1_at, tune_thresholds

train_main = script("train")

# ---- class weights ---------------------------------------------------------------------------


def test_inverse_weights_by_hand():
    # raw 1/1 and 1/3, scaled to mean 1: x (2 / (4/3)) = [1.5, 0.5]
    np.testing.assert_allclose(class_weights([1, 3], "inverse"), [1.5, 0.5])


def test_sqrt_inverse_weights_by_hand():
    raw = np.array([1.0, 1.0 / np.sqrt(3.0)])
    np.testing.assert_allclose(class_weights([1, 3], "sqrt_inverse"), raw * 2 / raw.sum())
    np.testing.assert_allclose(class_weights([1, 3], "sqrt_inverse"), [1.267949, 0.732051], atol=1e-6)


def test_effective_number_weights_by_hand():
    # beta 0.5: n=1 -> 0.5/0.5 = 1; n=3 -> 0.5/(1 - 0.125) = 4/7; scaled to mean 1
    np.testing.assert_allclose(class_weights([1, 3], "effective", beta=0.5), [14 / 11, 8 / 11])


def test_weights_have_mean_one_and_absent_classes_weigh_nothing():
    weights = class_weights([10, 0, 30], "inverse")
    assert weights[1] == 0.0
    assert weights.mean() == pytest.approx(1.0)
    np.testing.assert_array_equal(class_weights([5, 7], "none"), [1.0, 1.0])


def test_unknown_weight_scheme():
    with pytest.raises(ValueError, match="unknown class-weight scheme 'log'"):
        class_weights([1], "log")


# ---- threshold tuning ------------------------------------------------------------------------


def test_f1_at_a_threshold():
    assert f1_at(np.array([0.9, 0.6, 0.4]), np.array([True, False, True]), 0.5) == pytest.approx(0.5)
    assert f1_at(np.array([0.1]), np.array([False]), 0.5) == 0.0


def test_thresholds_maximise_each_labels_f1():
    scores = np.array([[0.45, 0.9], [0.30, 0.6], [0.20, 0.4], [0.10, 0.2]])
    truth = np.array([[1, 1], [0, 1], [0, 0], [0, 0]], dtype=bool)
    # label 0: only a threshold in (0.30, 0.45] separates its one positive (F1 1.0; at 0.5 it
    # would be 0.0): halfway, 0.375, so no observed score sits on it.
    # label 1: 0.5 (halfway between 0.4 and 0.6) gives F1 1.0, and is the default.
    np.testing.assert_allclose(tune_thresholds(scores, truth), [0.375, 0.5])


def test_a_label_without_positives_keeps_the_default():
    np.testing.assert_allclose(tune_thresholds(np.array([[0.7], [0.2]]), np.array([[0], [0]], dtype=bool)), [0.5])


# ---- data ------------------------------------------------------------------------------------


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "content", "task", "message"),
    [
        ("empty.csv", "", "single_label", "empty.csv: the file is empty"),
        (
            "nolabel.csv",
            "text\nhello\n",
            "single_label",
            "nolabel.csv:2: missing column(s) label for task single_label",
        ),
        ("blank.csv", "text,label\nhello,pos\n  ,neg\n", "single_label", "blank.csv:3: text is empty"),
        (
            "bad.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b", "label": \n',
            "single_label",
            "bad.jsonl:2: not valid JSON",
        ),
        ("pairs.csv", "text,label\na,b\n", "sentence_pair", "pairs.csv:2: missing column(s) text_pair"),
        (
            "tags.jsonl",
            '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["Ann", "Lee", "x"], "tags": ["B-PER", "I-PER"]}\n',
            "token_classification",
            "tags.jsonl:2: 3 tokens but 2 tags",
        ),
        (
            "bio.jsonl",
            '{"tokens": ["Ann"], "tags": ["PER"]}\n',
            "token_classification",
            "bio.jsonl:1: tag 'PER' is not BIO",
        ),
        ("data.txt", "a\n", "single_label", "unsupported file type '.txt'"),
    ],
)
def test_bad_data_names_the_file_and_line(tmp_path, name, content, task, message):
    with pytest.raises(DataError) as raised:
        load_examples(write(tmp_path / name, content), task)
    assert message in str(raised.value)


def test_multi_label_cells_as_json_or_pipes(tmp_path):
    path = write(tmp_path / "m.csv", 'text,labels\na,"[""bug"", ""billing""]"\nb,bug|praise\nc,\n')
    assert [e.labels for e in load_examples(path, "multi_label")] == [("bug", "billing"), ("bug", "praise"), ()]


def test_label_names_are_sorted_and_bio_tags_pair_up(tmp_path):
    path = write(
        tmp_path / "t.jsonl",
        '{"tokens": ["a", "b", "c"], "tags": ["I-PER", "B-LOC", "B-PER"]}\n{"tokens": ["d"], "tags": ["O"]}\n',
    )
    assert label_names(load_examples(path, "token_classification"), "token_classification") == [
        "O", "B-LOC", "I-LOC", "B-PER", "I-PER"
    ]  # fmt: skip


def test_held_out_split_is_stratified_and_seeded(tmp_path):
    rows = "".join(f"text {i},{'a' if i % 3 else 'b'}\n" for i in range(30))
    examples = load_examples(write(tmp_path / "s.csv", "text,label\n" + rows), "single_label")
    train_part, held = split_held_out(examples, 0.2, seed=1, task="single_label")
    assert len(train_part) + len(held) == 30 and {e.label for e in held} == {"a", "b"}
    assert split_held_out(examples, 0.2, seed=1, task="single_label")[1] == held


def test_a_label_seen_only_in_the_test_file_is_named(tmp_path, capsys, models_root):
    base = build_base_encoder(models_root / "base_for_errors")
    train_file = write(tmp_path / "train.csv", "text,label\n" + "good,pos\nbad,neg\n" * 4)
    test_file = write(tmp_path / "test.csv", "text,label\nfine,pos\nmeh,neutral\n")
    status = train_main(["--task", "single_label", "--train", str(train_file), "--test", str(test_file),
                         "--output", str(tmp_path / "out"), "--base-model", str(base)])  # fmt: skip
    assert status == 2
    assert f"{test_file}:3: label(s) 'neutral' never appear in the training data" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---- what training writes ---------------------------------------------------------------------


def test_training_writes_everything_archive_needs(trained):
    for task, folder in trained.items():
        for name in (
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "index_to_name.json",
            "model-config.yaml",
            "metrics.json",
        ):
            assert (folder / name).exists(), f"{task}: {name} missing"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["task"] == task and "validation" in metrics
    multi = yaml.safe_load((trained["multi_label"] / "model-config.yaml").read_text())["handler"]
    assert multi["classification"]["multi_label"] is True
    assert set(multi["classification"]["label_thresholds"]) == {"billing", "bug", "feature_request", "praise"}
    metrics = json.loads((trained["multi_label"] / "metrics.json").read_text())
    assert {"f1_micro", "f1_macro", "f1_samples", "hamming_loss", "f1_micro_at_0.5"} <= set(metrics["validation"])
    single = json.loads((trained["single_label"] / "metrics.json").read_text())
    assert single["class_weights"]["scheme"] == "inverse"
    assert {"accuracy", "f1_macro", "f1_weighted", "per_class"} <= set(single["validation"])
    assert json.loads((trained["token_classification"] / "index_to_name.json").read_text()) == {
        "0": "O", "1": "B-LOC", "2": "I-LOC", "3": "B-PER", "4": "I-PER"
    }  # fmt: skip
    assert "entity_f1" in json.loads((trained["token_classification"] / "metrics.json").read_text())["validation"]


# ---- class imbalance and calibration -------------------------------------------------------------


def test_focal_loss_equals_its_formula_and_is_cross_entropy_at_gamma_zero():
    import torch

    from hflabels.training.losses import focal_loss, sigmoid_focal_loss

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
    targets = torch.tensor([0, 1, -100])
    alpha = torch.tensor([0.5, 2.0, 1.0])
    p = torch.softmax(logits[:2], -1)
    p_t = p[[0, 1], [0, 1]]
    expected = (-alpha[[0, 1]] * (1 - p_t) ** 2 * torch.log(p_t)).mean()
    assert focal_loss(logits, targets, 2.0, alpha).item() == pytest.approx(expected.item(), rel=1e-6)
    cross_entropy = torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100)
    assert focal_loss(logits, targets, 0.0).item() == pytest.approx(cross_entropy.item(), rel=1e-6)
    multi = torch.tensor([[1.5, -0.5]])
    truth = torch.tensor([[1.0, 0.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(multi, truth)
    assert sigmoid_focal_loss(multi, truth, 0.0).item() == pytest.approx(bce.item(), rel=1e-6)


def test_the_logit_adjusted_loss_is_cross_entropy_of_the_logits_plus_the_log_prior():
    import torch

    from hflabels.training.losses import logit_adjusted_loss

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]], requires_grad=True)
    targets = torch.tensor([0, 2, -100])
    prior = torch.tensor([0.90, 0.09, 0.01])
    loss = logit_adjusted_loss(logits, targets, prior.log())
    adjusted = logits[:2] + prior.log()
    expected = -(adjusted.log_softmax(-1)[[0, 1], [0, 2]]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # Its gradient: the adjusted softmax minus the target, so a rare class's logit is pushed up
    # until it wins by log(1 / prior) more than plain cross-entropy would ask.
    loss.backward()
    softmax = torch.softmax(adjusted.detach(), -1)
    softmax[[0, 1], [0, 2]] -= 1.0
    torch.testing.assert_close(logits.grad[:2], softmax / 2, rtol=0, atol=1e-6)
    assert torch.equal(logits.grad[2], torch.zeros(3))  # ignored
    # A flat prior is plain cross-entropy.
    flat = logit_adjusted_loss(logits, targets, torch.full((3,), 1 / 3).log())
    plain = torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100)
    assert flat.item() == pytest.approx(plain.item(), rel=1e-6)


def test_resampling_balances_classes_as_documented(tmp_path):
    from hflabels.training.data import resample

    rows = "".join(f"text {i},common\n" for i in range(9)) + "rare one,rare\nrare two,rare\n"
    examples = load_examples(write(tmp_path / "s.csv", "text,label\n" + rows), "single_label")
    over = resample(examples, "single_label", "oversample", seed=3)
    under = resample(examples, "single_label", "undersample", seed=3)
    count = lambda found, label: sum(example.label == label for example in found)  # noqa: E731
    assert (count(over, "common"), count(over, "rare")) == (9, 9)
    assert (count(under, "common"), count(under, "rare")) == (2, 2)
    assert resample(examples, "single_label", "oversample", seed=3) == over  # seeded
    with pytest.raises(DataError, match="balances single-label classes; for multi_label use --class-weights"):
        resample(examples, "multi_label", "oversample", seed=3)


def train_imbalanced(tmp_path, models_root, options: list[str]):
    """``hflabels train`` on 40 common, 20 other and 2 rare sentences (20:1), one epoch; its folder."""
    base = build_base_encoder(models_root / "base_for_imbalance")
    common = [f"an ordinary sentence number {i}" for i in range(60)]
    train_file = write(tmp_path / "train.csv", "text,label\n" + "".join(f"{t},common\n" for t in common[:40])
                       + "".join(f"{t},other\n" for t in common[40:])
                       + "a rare one,rare\nanother rare one,rare\n")  # fmt: skip
    validation_file = write(tmp_path / "validation.csv", "text,label\none more,common\nsome other,other\nrare,rare\n")
    output = tmp_path / "out"
    argv = ["--task", "single_label", "--train", str(train_file), "--validation", str(validation_file), "--output",
            str(output), "--base-model", str(base), "--epochs", "1", "--batch-size", "8", *options]  # fmt: skip
    assert train_main(argv) == 0
    return output


@pytest.mark.parametrize("imbalance", [None, "none"])
def test_imbalanced_classes_are_oversampled_by_default_and_served_weighing_every_class_alike(
    tmp_path, capsys, models_root, imbalance
):  # fmt: skip
    from hflabels.calibrating import decisions_weigh_classes_alike

    chosen = [] if imbalance is None else ["--imbalance", imbalance]
    output = train_imbalanced(tmp_path, models_root, chosen)
    printed = capsys.readouterr().out
    metrics = json.loads((output / "metrics.json").read_text())
    adjustment = yaml.safe_load((output / "model-config.yaml").read_text())["handler"]["classification"][
        "calibration"]["logit_adjustment"]  # fmt: skip
    assert metrics["sampling"]["counts_before"] == {"common": 40, "other": 20, "rare": 2}
    if imbalance is None:  # 20:1, past auto's 10:1
        assert metrics["imbalance"]["mode"] == "oversample" and metrics["sampling"]["mode"] == "oversample"
        assert metrics["sampling"]["counts_after"] == {"common": 40, "other": 40, "rare": 40}
        assert "imbalance: classes 20.0:1: the rarer classes oversampled" in printed
        # Trained on a flat prior and served as trained: no correction brings the 20:1 prior back,
        # and hflabels calibrate keeps it so.
        assert adjustment == pytest.approx({"common": 0.0, "other": 0.0, "rare": 0.0}, abs=1e-6)
        assert decisions_weigh_classes_alike(output)
    else:
        assert metrics["imbalance"]["mode"] == "none" and metrics["sampling"]["mode"] == "none"
        assert metrics["sampling"]["counts_after"] == metrics["sampling"]["counts_before"]
        assert "imbalance: classes 20.0:1, decisions keep the training's prior (as asked)" in printed
        assert not decisions_weigh_classes_alike(output)


@pytest.mark.parametrize("imbalance", ["auto", "none"])
def test_the_logit_adjusted_loss_trains_balanced_decisions_that_are_served_as_trained(
    tmp_path, capsys, models_root, imbalance
):  # fmt: skip
    from hflabels.calibrating import decisions_weigh_classes_alike

    output = train_imbalanced(tmp_path, models_root, ["--loss", "logit_adjusted", "--imbalance", imbalance])
    printed = capsys.readouterr().out
    metrics = json.loads((output / "metrics.json").read_text())
    adjustment = yaml.safe_load((output / "model-config.yaml").read_text())["handler"]["classification"][
        "calibration"]["logit_adjustment"]  # fmt: skip
    # The loss balanced the classes: nothing is resampled on top of it.
    assert metrics["sampling"]["counts_after"] == metrics["sampling"]["counts_before"]
    assert metrics["loss"] == {"name": "logit_adjusted"}
    if imbalance == "auto":
        assert metrics["imbalance"]["mode"] == "logit_adjustment"
        assert "--loss logit_adjusted as asked; decisions served as trained" in printed
        # The model's own logits already weigh every class alike: no correction is served.
        assert adjustment == pytest.approx({"common": 0.0, "other": 0.0, "rare": 0.0}, abs=1e-6)
        assert decisions_weigh_classes_alike(output)
    else:
        # The training prior (40:20:2) put back: the served logits are the model's minus the
        # adjustment, its own plus the log prior, so the scores are posteriors at the training's prior.
        logs = np.log(np.array([40, 20, 2]) / 62)
        expected = dict(zip(("common", "other", "rare"), -(logs - logs.mean())))
        assert adjustment == pytest.approx(expected, abs=1e-5)
        assert not decisions_weigh_classes_alike(output)


def test_training_fits_and_writes_a_calibration(trained):
    single = yaml.safe_load((trained["single_label"] / "model-config.yaml").read_text())["handler"]
    calibration = single["classification"]["calibration"]
    assert calibration["temperature"] > 0
    # Trained with inverse class weights: the correction is their centred log, and with logit
    # adjustment the log of the training prior too (weights x shares: constant, no correction).
    metrics = json.loads((trained["single_label"] / "metrics.json").read_text())
    weights = {label: value for label, value in metrics["class_weights"].items() if label != "scheme"}
    counts = metrics["sampling"]["counts_before"]
    balanced = metrics["imbalance"]["mode"] == "logit_adjustment"
    logs = {label: np.log(value * (counts[label] if balanced else 1.0)) for label, value in weights.items()}
    centre = np.mean(list(logs.values()))
    assert calibration["logit_adjustment"] == pytest.approx({k: v - centre for k, v in logs.items()}, abs=1e-5)
    assert {"before", "after"} <= set(metrics["validation"]["calibration"])
    # The top-label curve from 100 validation examples on (hflabels.training.calibration).
    fitted_on = metrics["calibration_fit"]["examples"]
    assert ("top_label" in calibration) == (fitted_on >= 100)
    assert metrics["calibration_fit"]["top_label_knots"] == len(calibration.get("top_label", {}).get("confidence", []))
    multi = yaml.safe_load((trained["multi_label"] / "model-config.yaml").read_text())["handler"]
    assert set(multi["classification"]["calibration"]["temperature"]) == {"billing", "bug", "feature_request", "praise"}
    multi_metrics = json.loads((trained["multi_label"] / "metrics.json").read_text())["validation"]["calibration"]
    assert {"ece", "nll", "brier"} <= set(multi_metrics["before"]) and "after" in multi_metrics
    tokens = yaml.safe_load((trained["token_classification"] / "model-config.yaml").read_text())["handler"]
    assert "calibration" not in tokens.get("classification", {}) and "calibration" not in tokens
