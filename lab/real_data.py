"""The measured comparison on real, human-labelled data (``make real-data``).

On the VADER corpora (Hutto & Gilbert 2014: movie reviews, Amazon reviews, NYT editorials,
tweets), in one command and on the same splits:

1. the default MiniLM fine-tuned on the movie domain with the recipe (every epoch evaluated, best
   kept), calibrated, archived, served by a real torchserve and evaluated over HTTP on every
   domain's test split;
2. the same model trained on all four domains' training splits together;
3. the baselines users know: VADER itself (compound >= 0.05 positive, <= -0.05 negative, as its
   README says) and TF-IDF + logistic regression (``class_weight="balanced"``) trained on the same
   examples as each model;
4. a regression model of the mean human rating, its Pearson correlation beside VADER's compound;
5. every class-imbalance strategy the trainer offers on the movie domain's real 2% neutral class,
   over several seeds;
6. bf16 training against fp32 (time and accuracy) where the CPU has bf16 units.

Sizes are subsamples chosen to fit the budget on 2 CPU cores, written into the results.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from handler.postprocess.scoring import softmax
from hflabels.archiving import archive
from hflabels.evaluation import served_predictions
from hflabels.paths import TORCHSERVE_CONFIG
from hflabels.torchserve_config import config_with_free_ports
from hflabels.torchserve_control import start, stop
from hflabels.training.calibration import calibration_metrics
from hflabels.training.data import Example, load_examples
from hflabels.training.metrics import regression_metrics, single_label_metrics
from hflabels.training.trainer import TrainOptions, train
from hflabels.vader_data import DOMAINS, LABELS, fetch_sdist, read_corpora, write_dataset
from lab.imbalance import STRATEGIES
from lab.results import write_results

# Every strategy the trainer offers, as the 96-sentence experiment names them.
IMBALANCE_STRATEGIES = STRATEGIES


@dataclass(frozen=True)
class Plan:
    output: Path
    seed: int = 42
    epochs: int = 3
    batch_size: int = 32
    movie_train: int = 4000
    per_domain_train: int = 1500
    regression_train: int = 3000
    imbalance_train: int = 1000
    imbalance_epochs: int = 2
    imbalance_seeds: tuple[int, ...] = (1, 2, 3)
    bf16_check_examples: int = 1000
    bf16: bool = True
    strategies: tuple[str, ...] = tuple(IMBALANCE_STRATEGIES)


@dataclass
class Results:
    plan: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)
    classification: dict[str, Any] = field(default_factory=dict)
    regression: dict[str, Any] = field(default_factory=dict)
    imbalance: dict[str, Any] = field(default_factory=dict)
    bf16: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


# ---- baselines -----------------------------------------------------------------------------------


def vader_compound(texts: Sequence[str]) -> np.ndarray:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(text)["compound"] for text in texts])


def vader_labels(compound: np.ndarray) -> list[str]:
    """VADER's README thresholds: compound >= 0.05 positive, <= -0.05 negative, else neutral."""
    return ["positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral" for c in compound]


def tfidf_logistic_regression(
    train_texts: Sequence[str], train_labels: Sequence[str]
) -> Callable[[Sequence[str]], Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        LogisticRegression(class_weight="balanced", max_iter=2000),
    )
    model.fit(list(train_texts), list(train_labels))
    return lambda texts: model.predict(list(texts))


# ---- metrics -------------------------------------------------------------------------------------


def label_metrics(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    index = {label: i for i, label in enumerate(LABELS)}
    found = single_label_metrics([index[t] for t in truth], [index.get(p, -1) for p in predicted], LABELS)
    return {
        "accuracy": round(found["accuracy"], 4),
        "f1_macro": round(found["f1_macro"], 4),
        "neutral_recall": round(found["per_class"]["neutral"]["recall"], 4),
    }


def uncalibrated(probabilities: np.ndarray, temperature: float, adjustment: np.ndarray) -> np.ndarray:
    """The model's own softmax from served ``softmax((z - a) / T)``: softmax(T log p + a), exactly
    (softmax ignores the constant that log p carries)."""
    return softmax(temperature * np.log(np.clip(probabilities, 1e-30, 1.0)) + adjustment)


def served_classification(
    url: str, token: str | None, examples: list[Example], calibration: dict[str, Any]
) -> dict[str, Any]:
    """Accuracy, macro-F1, neutral recall and ECE before/after calibration of answers served over HTTP."""
    answers = served_predictions(url, token, examples, "single_label", batch_size=32, concurrency=4)
    probabilities = np.array([[answer[label] for label in LABELS] for answer in answers])
    truth = np.array([LABELS.index(example.label) for example in examples])
    adjustment = np.array([calibration["logit_adjustment"].get(label, 0.0) for label in LABELS])
    before = uncalibrated(probabilities, float(calibration["temperature"]), adjustment)
    predicted = [LABELS[i] for i in probabilities.argmax(axis=1)]
    return {
        **label_metrics([example.label for example in examples], predicted),
        "ece_before": round(calibration_metrics(before, truth)["ece"], 4),
        "ece_after": round(calibration_metrics(probabilities, truth)["ece"], 4),
    }


# ---- the run --------------------------------------------------------------------------------------


def split_files(data: Path, domain: str, regression: bool = False) -> dict[str, Path]:
    folder = data / domain / ("regression" if regression else "")
    return {name: folder / f"{name}.csv" for name in ("train", "validation", "test")}


def combined_file(data: Path, name: str, per_domain: int | None, seed: int, output: Path) -> Path:
    """One CSV of every domain's ``name`` split (each capped at ``per_domain``, seeded)."""
    import csv
    import random

    rng = random.Random(seed)
    rows: list[list[str]] = []
    for domain in DOMAINS:
        examples = load_examples(split_files(data, domain)[name], "single_label")
        if per_domain is not None and len(examples) > per_domain:
            examples = rng.sample(examples, per_domain)
        rows += [[example.text, example.label] for example in examples]
    rng.shuffle(rows)
    with output.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return output


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("torch", "transformers", "tokenizers", "torchserve", "scikit-learn", "vaderSentiment")
    return {name: version(name) for name in names} | {"python": platform.python_version()}


def run(plan: Plan, say: Callable[[str], None]) -> Results:
    import torch

    from handler.engine.execution import cpu_flags, fast_bfloat16

    output = plan.output
    output.mkdir(parents=True, exist_ok=True)
    bf16_unit = fast_bfloat16(torch.device("cpu"))
    use_bf16 = plan.bf16 and bf16_unit is not None
    results = Results(
        plan={**asdict(plan), "output": str(plan.output)},
        machine={
            "processor": platform.processor() or platform.machine(),
            "cores": torch.get_num_threads(),
            "bf16_unit": bf16_unit,
            "avx512": "avx512f" in cpu_flags(),
        },  # fmt: skip
        versions=library_versions(),
    )
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        results.seconds[name] = round(time.perf_counter() - clock, 1)
        say(f"  [{name}: {results.seconds[name]:.0f} s]")
        clock = time.perf_counter()

    data = output / "data"
    write_dataset(data, read_corpora(fetch_sdist(output.parent / "downloads"), list(DOMAINS)), plan.seed)
    tests = {domain: load_examples(split_files(data, domain)["test"], "single_label") for domain in DOMAINS}
    lap("data")

    def recipe(train_file: Path, validation: Path, out: Path, limit: int | None, **extra: Any) -> dict[str, Any]:
        options = TrainOptions(task=extra.pop("task", "single_label"), train=train_file, validation=validation,
                               output=out, epochs=extra.pop("epochs", plan.epochs), batch_size=plan.batch_size,
                               seed=extra.pop("seed", plan.seed), max_train_examples=limit,
                               early_stopping_patience=1, bf16=extra.pop("bf16", use_bf16), **extra)  # fmt: skip
        return train(options)

    # bf16 against fp32, same examples, one epoch each, interleaved twice: each precision's faster round.
    if bf16_unit is not None:
        movies = split_files(data, "movies")
        rounds: dict[str, list[dict[str, Any]]] = {"fp32": [], "bf16": []}
        for precision in ("fp32", "bf16", "fp32", "bf16"):
            trained = recipe(movies["train"], movies["validation"], output / f"check-{precision}",
                             plan.bf16_check_examples, epochs=1, bf16=precision == "bf16", calibrate=False)  # fmt: skip
            rounds[precision].append(trained["history"][0])
        for precision, rows in rounds.items():
            fastest = min(rows, key=lambda row: row["seconds"])
            results.bf16[precision] = {
                "train_seconds": fastest["seconds"],
                "examples_per_second": fastest["examples_per_second"],
                "validation_accuracy": rows[-1]["accuracy"],
                "validation_f1_macro": rows[-1]["f1_macro"],
                "rounds_seconds": [row["seconds"] for row in rows],
            }
        results.bf16["speedup"] = round(
            results.bf16["fp32"]["train_seconds"] / results.bf16["bf16"]["train_seconds"], 2
        )
        lap("bf16 check")

    movies = split_files(data, "movies")
    say(f"training on movies ({plan.movie_train} examples, bf16 {use_bf16}) ...")
    movie_model = output / "movie-model"
    results.training["movies"] = summary(recipe(movies["train"], movies["validation"], movie_model, plan.movie_train))
    lap("train movies")
    all_train = combined_file(data, "train", plan.per_domain_train, plan.seed, output / "all-train.csv")
    all_validation = combined_file(data, "validation", None, plan.seed, output / "all-validation.csv")
    say(f"training on all four domains ({plan.per_domain_train} per domain) ...")
    all_model = output / "all-domains-model"
    results.training["all_domains"] = summary(recipe(all_train, all_validation, all_model, None))
    lap("train all domains")
    regression = split_files(data, "movies", regression=True)
    regression_model = output / "regression-model"
    say(f"training the rating regression on movies ({plan.regression_train} examples) ...")
    results.training["regression"] = summary(
        recipe(
            regression["train"], regression["validation"], regression_model, plan.regression_train, task="regression"
        )  # fmt: skip
    )
    lap("train regression")

    # Baselines on the same training examples as each model.
    trained_on = {
        "movies": load_examples(movies["train"], "single_label"),
        "all_domains": load_examples(all_train, "single_label"),
    }
    from hflabels.training.data import subsample

    trained_on["movies"] = subsample(trained_on["movies"], plan.movie_train, plan.seed, "single_label")
    baselines = {name: tfidf_logistic_regression([e.text for e in ex], [e.label for e in ex])
                 for name, ex in trained_on.items()}  # fmt: skip

    # Serve the three models from one torchserve and evaluate over HTTP.
    store = output / "store"
    for name, folder in (("movies", movie_model), ("alldomains", all_model), ("rating", regression_model)):
        archive(folder, name, export_path=store)
    config = config_with_free_ports(TORCHSERVE_CONFIG, output / "config.properties")
    server = start(config, store, ["movies=movies.mar", "alldomains=alldomains.mar", "rating=rating.mar"],
                   output / "run")  # fmt: skip
    try:
        token = server.inference_token
        for domain, examples in tests.items():
            say(f"evaluating on {domain} ({len(examples)} test sentences) over HTTP ...")
            truth = [example.label for example in examples]
            texts = [example.text for example in examples]
            compound = vader_compound(texts)
            row: dict[str, Any] = {
                "examples": len(examples),
                "neutral_share": round(truth.count("neutral") / len(truth), 4),
                "vader": label_metrics(truth, vader_labels(compound)),
                "tfidf_lr_movies": label_metrics(truth, list(baselines["movies"](texts))),
                "tfidf_lr_all_domains": label_metrics(truth, list(baselines["all_domains"](texts))),
            }
            for name, folder, key in (("movies", movie_model, "minilm_movies"),
                                      ("alldomains", all_model, "minilm_all_domains")):  # fmt: skip
                calibration = json.loads((folder / "metrics.json").read_text())["calibration"]
                row[key] = served_classification(server.predictions_url(name), token, examples, calibration)
            results.classification[domain] = row
            rated = load_examples(split_files(data, domain, regression=True)["test"], "regression")
            scores = served_predictions(server.predictions_url("rating"), token, rated, "regression", 32, 4)
            ratings = [example.score for example in rated]
            results.regression[domain] = {
                "minilm_movies": {k: round(v, 4) for k, v in regression_metrics(ratings, scores).items()},
                "vader_compound": {k: round(v, 4) for k, v in regression_metrics(ratings, list(compound)).items()},
            }
    finally:
        stop(output / "run")
    lap("serve and evaluate")

    # Class imbalance on the real 2% neutral class of the movie domain.
    for strategy in plan.strategies:
        rows = []
        for seed in plan.imbalance_seeds:
            trained = recipe(movies["train"], movies["validation"], output / "imbalance" / f"{strategy}-{seed}",
                             plan.imbalance_train, epochs=plan.imbalance_epochs, seed=seed, test=movies["test"],
                             **IMBALANCE_STRATEGIES[strategy])  # fmt: skip
            test = trained["test"]
            rows.append({"seed": seed, "f1_macro": test["f1_macro"], "accuracy": test["accuracy"],
                         "neutral_recall": test["per_class"]["neutral"]["recall"],
                         "ece_before": test["calibration"]["before"]["ece"],
                         "ece_after": test["calibration"]["after"]["ece"]})  # fmt: skip
        results.imbalance[strategy] = {
            "runs": rows,
            **{
                f"{key}_mean": round(float(np.mean([r[key] for r in rows])), 4)
                for key in ("f1_macro", "accuracy", "neutral_recall", "ece_before", "ece_after")
            },  # fmt: skip
            "f1_macro_sd": round(float(np.std([r["f1_macro"] for r in rows], ddof=1)) if len(rows) > 1 else 0.0, 4),
        }
        say(f"  imbalance {strategy}: macro-F1 {results.imbalance[strategy]['f1_macro_mean']:.3f}, "
            f"neutral recall {results.imbalance[strategy]['neutral_recall_mean']:.3f}")  # fmt: skip
    lap("imbalance strategies")
    results.seconds["total"] = round(sum(results.seconds.values()), 1)
    write_results(output / "results.json", asdict(results))
    return results


def summary(trained: dict[str, Any]) -> dict[str, Any]:
    validation = trained["validation"]
    return (
        {
            "train_examples": trained["train_examples"],
            "recipe": trained["recipe"],
            "history": trained["history"],
            "validation_f1_macro": validation["f1_macro"],
            "temperature": (trained.get("calibration") or {}).get("temperature"),
        }
        if "f1_macro" in validation
        else {
            "train_examples": trained["train_examples"],
            "recipe": trained["recipe"],
            "history": trained["history"],
            "validation": validation,
        }
    )
