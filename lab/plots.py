"""The lab's plots: served benchmarks, peers and the real-data comparison, each drawn from the
results JSON its command writes (``python -m lab plots`` redraws them all from docs/results)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_benchmark(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput_axis, latency_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"mixed": "tab:blue", "long": "tab:orange"}
    for variant, runs in results.get("served", {}).items():
        levels = sorted(runs, key=int)
        clients = [int(level) for level in levels]
        throughput_axis.plot(clients, [runs[c]["throughput"] for c in levels], "o-", color=colours[variant],
                             label=f"served, {variant}")  # fmt: skip
        limits = results["in_process"][variant]
        throughput_axis.axhline(
            limits["best"], color=colours[variant], linestyle="--", label=f"in-process limit, {variant}"
        )
        if variant == "mixed":
            throughput_axis.axhline(limits["chunks_of_32"], color=colours[variant], linestyle=":",
                                    label="handler in-process, 32 at a time (a server's view)")  # fmt: skip
        latency_axis.plot(
            clients, [runs[c]["p99_ms"] for c in levels], "o-", color=colours[variant], label=f"p99, {variant}"
        )
        latency_axis.plot(
            clients, [runs[c]["p50_ms"] for c in levels], "s:", color=colours[variant], label=f"p50, {variant}"
        )
    throughput_axis.set(xlabel="concurrent clients", ylabel="requests / s (one input each)", title="Throughput")
    latency_axis.set(xlabel="concurrent clients", ylabel="latency (ms)", title="Latency", yscale="log")
    for axis in (throughput_axis, latency_axis):
        axis.set_xscale("log", base=2)
        axis.grid(alpha=0.3)
        if axis is throughput_axis:
            axis.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 0.1))
        else:
            axis.legend(fontsize=7, loc="upper left")
    info = results["machine"]
    figure.suptitle(
        f"{Path(results['model']).name} on {info['cores']} cores ({info['cpu']}), torch {info['torch']}", fontsize=9
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def plot_peers(results: dict[str, Any], concurrencies: list[int], path: Path) -> None:
    """Throughput of each server relative to this handler's, per concurrency (bars), and p50."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = {name: found for name, found in results["servers"].items() if "labels" in found}
    ours = servers.get("this handler")
    if ours is None:
        return
    figure, (ratio_axis, latency_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(servers))
    for position, (name, found) in enumerate(servers.items()):
        xs = [i + position * width for i in range(len(concurrencies))]
        ratios = [found[str(c)]["throughput"] / ours[str(c)]["throughput"] for c in concurrencies]
        ratio_axis.bar(xs, ratios, width, label=name)
        latency_axis.bar(xs, [found[str(c)]["p50_ms"] for c in concurrencies], width, label=name)
    for axis in (ratio_axis, latency_axis):
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(concurrencies))], [f"c={c}" for c in concurrencies])
        axis.grid(alpha=0.3, axis="y")
        axis.legend()
    ratio_axis.set(ylabel="throughput / this handler's", title="Throughput, relative")
    latency_axis.set(ylabel="p50 latency (ms)", title="Median latency")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_real_data(results: dict[str, Any], path: Path) -> None:
    """Macro-F1 per domain for VADER, TF-IDF + LR and the served MiniLM models; beside it, the
    imbalance strategies' macro-F1 and neutral recall on the movie domain (mean of seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(results["classification"])
    systems = {"vader": "VADER", "tfidf_lr_movies": "TF-IDF+LR (movies)", "minilm_movies": "MiniLM (movies)",
               "tfidf_lr_all_domains": "TF-IDF+LR (all)", "minilm_all_domains": "MiniLM (all domains)"}  # fmt: skip
    figure, (domain_axis, imbalance_axis) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(systems)
    for offset, (key, name) in enumerate(systems.items()):
        values = [results["classification"][domain][key]["f1_macro"] for domain in domains]
        domain_axis.bar(np.arange(len(domains)) + (offset - len(systems) / 2 + 0.5) * width, values, width, label=name)
    domain_axis.set(xticks=range(len(domains)), xticklabels=domains, ylabel="macro-F1 (test split)", ylim=(0, 1),
                    title="3-class sentiment on each domain's test split")  # fmt: skip
    domain_axis.legend(fontsize=7, loc="lower left")
    strategies = list(results.get("imbalance", {}))
    if strategies:
        positions = np.arange(len(strategies))
        for offset, (key, name) in enumerate(
            (("f1_macro_mean", "macro-F1"), ("neutral_recall_mean", "neutral recall"))
        ):
            imbalance_axis.bar(positions + (offset - 0.5) * 0.4, [results["imbalance"][s][key] for s in strategies],
                               0.4, label=name)  # fmt: skip
        imbalance_axis.set(xticks=positions, ylim=(0, 1), title="movies, real 2% neutral class (mean of seeds)")
        imbalance_axis.set_xticklabels(strategies, rotation=30, ha="right", fontsize=7)
        imbalance_axis.legend(fontsize=7)
    for axis in (domain_axis, imbalance_axis):
        axis.grid(alpha=0.3, axis="y")
    versions = results["versions"]
    figure.suptitle(f"all-MiniLM-L6-v2, torch {versions['torch']}, transformers {versions['transformers']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def plot_rare_class(document: dict[str, Any], path: Path) -> None:
    """``python -m lab rare-class``: per ratio, what each training serves (its ``served`` rule):
    rare-class recall, balanced accuracy and macro-F1 on the test set, medians with the seeds' range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = document["summary"]
    ratios = sorted({int(key.split("|")[0]) for key in summary}, reverse=True)
    trainings = list(dict.fromkeys(key.split("|")[1] for key in summary))
    metrics = (("rare_recall", "rare-class recall"), ("balanced_accuracy", "balanced accuracy"),
               ("macro_f1", "macro-F1"))  # fmt: skip
    columns = min(2, len(ratios))
    rows_of_axes = -(-len(ratios) // columns)
    figure, axes = plt.subplots(rows_of_axes, columns, figsize=(6.5 * columns, 4.0 * rows_of_axes), squeeze=False)
    for axis in axes.flat[len(ratios):]:
        axis.set_visible(False)
    for axis, ratio in zip(axes.flat, ratios):
        present = [training for training in trainings if f"{ratio}|{training}|served" in summary]
        width = 0.8 / len(present)
        for offset, training in enumerate(present):
            found = summary[f"{ratio}|{training}|served"]
            rows = [found["test"][metric] for metric, _ in metrics]
            medians = np.array([row["median"] for row in rows])
            spread = np.array([[m - row["min"] for m, row in zip(medians, rows)],
                               [row["max"] - m for m, row in zip(medians, rows)]])  # fmt: skip
            axis.bar(np.arange(len(metrics)) + (offset - len(present) / 2 + 0.5) * width, medians, width,
                     yerr=spread, capsize=3, label=f"{training} ({found['seeds']} seeds)")  # fmt: skip
        axis.set(xticks=range(len(metrics)), xticklabels=[name for _, name in metrics], ylim=(0, 1),
                 title=f"rare class at {ratio}:1, as served")  # fmt: skip
        axis.grid(alpha=0.3, axis="y")
        axis.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"all-MiniLM-L6-v2, {document['majority']} movie sentences per majority class, "
                    f"{document['epochs']:g} epochs; test: 200 rare, 600 common; medians, bars the seeds' range",
                    fontsize=9)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
