"""Pages generated at build time (mkdocs-gen-files): the configuration reference from the settings'
own fields, the CLI reference from each command's parser, and the results pages from the JSON the
measurement commands write. Runs in .venv-docs, which has neither torch nor the project's
dependencies: what it imports must stay light (it is also what keeps ``--help`` fast)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mkdocs_gen_files
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from handler.api.settings.reference import group_docs, reference_rows  # noqa: E402
from hflabels.cli import COMMANDS, HFLABELS  # noqa: E402
from lab import tables  # noqa: E402
from lab.cli import TOOLS  # noqa: E402

RESULTS = REPO / "docs" / "results"


def shipped_handler_values() -> dict[str, object]:
    """The values the shipped model-config.yaml sets, by dotted key."""
    document = yaml.safe_load((REPO / "hflabels" / "defaults" / "model-config.yaml").read_text(encoding="utf-8"))
    found: dict[str, object] = {}
    for key, value in (document.get("handler") or {}).items():
        if isinstance(value, dict):
            found.update({f"{key}.{inner}": item for inner, item in value.items()})
        else:
            found[key] = value
    return found


def configuration_reference() -> str:
    shipped = shipped_handler_values()
    groups = group_docs()
    lines = [
        "# Configuration reference",
        "",
        "Every key of the `handler:` section of `model-config.yaml`, generated from the settings' own "
        "definitions (`handler/api/settings/`), where each key is defined once with its check and this "
        "text. An unknown key or a bad value fails the model's load naming it. *Default* is what an absent "
        "key means; *shipped* is what `hflabels/defaults/model-config.yaml` (archived by `hflabels archive` "
        "unless `--config` names another) sets.",
        "",
        "TorchServe's own keys (`batchSize`, `maxBatchDelay`, `minWorkers`, `responseTimeout`, ...) sit at "
        "the top of the same file; see [Configuring a model](configuration-guide.md).",
    ]
    current = None
    for row in reference_rows():
        if row.group != current:
            current = row.group
            title = f"`handler.{row.group}`" if row.group else "Top level"
            lines += ["", f"## {title}", ""]
            if row.group:
                lines += [groups[row.group], ""]
            lines += ["| key | accepts | default | shipped | what it does |", "| --- | --- | --- | --- | --- |"]
        value = shipped.get(row.key)
        shown = "-" if row.key not in shipped else f"`{value}`"
        lines.append(f"| `{row.key}` | {row.accepts} | `{row.default}` | {shown} | {row.doc} |")
    return "\n".join(lines) + "\n"


def cli_reference() -> str:
    lines = ["# Command-line reference", "",
             "`hflabels` is the workflow; the measurement and experiment tools are the lab "
             "(`python -m lab TOOL` from a checkout, `make bench` and friends). Generated from each "
             "command's own parser: what `--help` prints.", ""]  # fmt: skip
    lines += ["| command | what it does |", "| --- | --- |"]
    lines += [f"| [`hflabels {name}`](#hflabels-{name}) | {summary} |" for name, (_, summary) in COMMANDS.items()]
    for name in COMMANDS:
        lines += ["", f"## hflabels {name}", "", "```text", HFLABELS.parser_for(name).format_help().rstrip(), "```"]
    lines += ["", "## The lab", "", "Run from the repository root: `python -m lab TOOL --help` for each tool's flags.",
              "", "| tool | Make target | what it measures |", "| --- | --- | --- |"]  # fmt: skip
    lines += [f"| `python -m lab {name}` | `make {name}` | {summary} |" for name, (_, summary) in TOOLS.items()]
    return "\n".join(lines) + "\n"


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def noted(source: str, table: str) -> str:
    """``table`` followed by the run's own note (which runs came from where, what a name meant then)."""
    note = load(source).get("note")
    return f"{table}\n\n*{note.rstrip('.')}.*" if note else table


def results_page(title: str, intro: str, sections: list[tuple[str, str, str, str | None]]) -> str:
    """``sections``: (heading, JSON file, table, plot file or None)."""
    lines = [f"# {title}", "", intro]
    for heading, source, body, plot in sections:
        lines += ["", f"## {heading}", "", f"*{tables.provenance(load(source))}; from `docs/results/{source}`.*", "",
                  body]  # fmt: skip
        if plot:
            lines += ["", f"![{heading}]({plot})"]
    return "\n".join(lines) + "\n"


# The serving-modes runs, by CPU class: bf16 units (dtype auto serves bf16) and AVX2 only (float32).
SERVING_MODES_RUNS = (
    ("AMD EPYC Zen 5, bf16, with TorchServe's floor", "serving-modes-floor-zen5.json"),
    ("AMD EPYC Zen 5, bf16", "serving-modes-zen5.json"),
    ("AMD EPYC, AVX2 only", "serving-modes.json"),
    # GOMP_SPINCOUNT for the server: 5 rounds, then the first run (3 rounds).
    ("AMD EPYC Zen 5, bf16, OpenMP threads sleeping sooner", "omp-spin-zen5.json"),
    ("AMD EPYC Zen 5, bf16, OpenMP threads sleeping sooner (first run)", "omp-spin-zen5-first.json"),
    # Two workers, a lone request borrowing the idle one's cores: the modes as shipped, then the two
    # runs that decided borrow_idle_cores auto (OpenMP's default spin, then 10,000 spins).
    ("AMD EPYC Zen 5, bf16, two workers borrowing idle cores", "borrow-cores-zen5.json"),
    ("AMD EPYC Zen 5, bf16, borrowing under OpenMP's default spin", "borrow-cores-zen5-default-spin.json"),
    ("AMD EPYC Zen 5, bf16, borrowing with GOMP_SPINCOUNT=10000", "borrow-cores-zen5-short-spin.json"),
    ("AMD EPYC Zen 5, float32", "serving-modes-float32-zen5.json"),
    # After drift windows became common to the workers (2026-12-05).
    ("AMD EPYC Zen 5, bf16, classic and two workers (drift windows common)", "serving-modes-zen5-shared-drift.json"),
)

RESULT_PAGES = {
    "results/serving.md": lambda: results_page(
        "Served throughput and latency",
        "`make bench` (`python -m lab bench`): the model's in-process limit and the served figures at 1, 8 "
        "and 32 clients, in one run. How to read and reproduce them: [Performance](../performance/index.md).",
        [("Intel Xeon with AMX", "bench-results.json", tables.bench_tables(load("bench-results.json")), "bench.png"),
         ("AMD EPYC", "bench-results-amd-epyc.json", tables.bench_tables(load("bench-results-amd-epyc.json")),
          None)]),  # fmt: skip
    "results/peers.md": lambda: results_page(
        "Against the peers",
        "`make bench-peers`: this handler, TorchServe's own Hugging Face example and infinity-emb, one model, "
        "one machine, one run; each peer at its default and its fastest precision.",
        [("Intel Xeon with AMX: requests per second", "bench-peers-results.json",
          tables.peers_headline(load("bench-peers-results.json")), "peers.png"),
         ("AMD EPYC Zen 5 (bf16): requests per second", "bench-peers-zen5.json",
          tables.peers_headline(load("bench-peers-zen5.json")), "peers-zen5.png")]),  # fmt: skip
    "results/accelerations.md": lambda: results_page(
        "Accelerations",
        "`make accelerations`: each opt-in acceleration through the handler's own loader, in-process, against "
        "float32 on real movie test sentences: speed and how far answers move.",
        [("Intel Xeon with AMX", "accelerations.json", tables.accelerations_table(load("accelerations.json")), None),
         ("AMD EPYC Zen 5", "accelerations-amd.json", tables.accelerations_table(load("accelerations-amd.json")),
          None)]),  # fmt: skip
    "results/real-data.md": lambda: results_page(
        "Real data: macro-F1 per domain",
        "`make real-data`: the VADER corpora (four domains, human ratings), VADER itself and TF-IDF + "
        "logistic regression beside the served MiniLM models, in one command. The study: "
        "[Real, human-labelled data](../training/real-data.md).",
        [("Test macro-F1", "real-data-results.json", tables.real_data_table(load("real-data-results.json")),
          "real-data.png")]),  # fmt: skip
    "results/guarantees.md": lambda: results_page(
        "Prediction sets, abstention and drift on real data",
        "`make guarantees`: the movie model recalibrated on movie validation data, served by a real torchserve. "
        "What the figures mean: [Prediction sets, abstention and drift](../trust/guarantees.md).",
        [("Model trained at today's defaults (AMD EPYC Zen 5, bf16): coverage over 100 re-splits",
          "guarantees-zen5.json", tables.coverage_table(load("guarantees-zen5.json")), "risk-coverage-zen5.png"),
         ("Model trained at today's defaults: drift tests per traffic, one window of 200", "guarantees-zen5.json",
          tables.drift_table(load("guarantees-zen5.json")), None),
         ("Earlier model (trained at the data's prior, float32): coverage over 100 re-splits",
          "guarantees-results.json", tables.coverage_table(load("guarantees-results.json")), "risk-coverage.png"),
         ("Earlier model: drift gauges per traffic", "guarantees-results.json",
          tables.drift_table(load("guarantees-results.json")), None)]),  # fmt: skip
    "results/drift.md": lambda: results_page(
        "Drift alarm on real shifts",
        "`python -m lab drift --models FOLDER...`: a movie MiniLM (3,000 VADER movie sentences, 3 epochs, "
        "`hflabels train`'s defaults: the neutral class oversampled from 26:1) as `hflabels train` wrote it "
        "and after `hflabels calibrate` on the movie validation split; the served "
        "monitor's windows, tests and alarm on its answers to the VADER test splits, default settings. "
        "What it means: [Prediction sets, abstention and drift](../trust/guarantees.md).",
        [("False alarms, detection and power", "drift.json", tables.drift_alarm_tables(load("drift.json")), None),
         ("What the monitor costs served (AMD EPYC Zen 5): one BLAS thread, lowest priority", "drift-cost-zen5.json",
          tables.serving_modes_table(load("drift-cost-zen5.json")), None),
         ("What the monitor cost served before (two BLAS threads, normal priority)", "drift-cost-zen5-before.json",
          tables.serving_modes_table(load("drift-cost-zen5-before.json")), None)]),  # fmt: skip
    "results/calibration.md": lambda: results_page(
        "Calibration on unseen data",
        "`make calibration` (`python -m lab calibration --models FOLDER`): a movie MiniLM (3,000 VADER movie "
        "sentences, 3 epochs, `hflabels train`'s defaults); every calibrator fitted on validation examples "
        "and measured on the movie test "
        "split it never saw, with the estimator's noise (bootstrap over test examples) and the spread over "
        "other validation halves. What it means: [Calibrated scores](../trust/calibration.md).",
        [("Calibrators on the test split", "calibration.json", tables.calibration_tables(load("calibration.json")),
          None)]),  # fmt: skip
    "results/serving-modes.md": lambda: results_page(
        "Serving modes side by side",
        "`make serving-modes` (`python -m lab serving-modes`): the demo MiniLM served by one torchserve per mode, "
        "started together and measured in interleaved rounds (medians), on mixed inputs of 5-60 words; "
        "*of in-process* is the served rate over the handler's own in-process rate in arrival chunks of 32. "
        "What the modes are: [Serving modes](../performance/serving-modes.md).",
        [(f"{machine}: one client", source, noted(source, tables.lone_request_table(load(source))), None)
         for machine, source in SERVING_MODES_RUNS]
        + [(f"{machine}: every mode and load", source, tables.serving_modes_table(load(source)), None)
           for machine, source in SERVING_MODES_RUNS]
        + [("AMD EPYC Zen 5, bf16: the handler in-process with the cores split (`python -m lab worker-split`)",
            "worker-split-zen5.json", tables.worker_split_table(load("worker-split-zen5.json")), None)]),  # fmt: skip
    "results/rare-class.md": lambda: results_page(
        "A rare class that can be learned",
        "`make rare-class` (`python -m lab rare-class`): movie sentences rated negative and positive with NYT "
        "editorial sentences as a rare class; plain training, inverse class weights and oversampling (what "
        "`--imbalance auto` does from 10:1), every decision rule on their logits (*served* is what `hflabels "
        "train` serves); tested on 300 of each sentiment and 200 of the rare class. What it means: "
        "[Class imbalance](../training/imbalance.md).",
        [("Decisions on the rare class", "rare-class.json", noted("rare-class.json",
          tables.rare_class_table(load("rare-class.json"))), "rare-class.png")]),  # fmt: skip
    "results/imbalance.md": lambda: results_page(
        "Class imbalance (demo data)",
        "`make imbalance`: every strategy on one imbalanced split of the demo data, medians over seeds.",
        [("Strategies", "imbalance.json", tables.imbalance_table(load("imbalance.json")), "imbalance.png")]),
    "results/startup.md": lambda: results_page(
        "Several models started together",
        "`make startup` (`python -m lab startup`): N archives served by one torchserve with the shipped "
        "settings, seconds from `torchserve --start` until every model has a READY worker, with an empty "
        "load cache and again after a restart. How the load-time timings are shared: "
        "[Performance](../performance/index.md#several-models-at-once).",
        [("AMD EPYC Zen 5: archives of one model", "startup-zen5.json",
          tables.startup_table(load("startup-zen5.json")), None),
         ("AMD EPYC Zen 5, 2026-12-05: one worker a model", "startup-zen5-one-worker-dec05.json",
          tables.startup_table(load("startup-zen5-one-worker-dec05.json")), None),
         ("AMD EPYC Zen 5, 2026-12-05: two workers a model (`--workers 2`)", "startup-zen5-two-workers.json",
          tables.startup_table(load("startup-zen5-two-workers.json")), None),
         ("AMD EPYC Zen 5: distinct models (each timed)", "startup-distinct-zen5.json",
          tables.startup_table(load("startup-distinct-zen5.json")), None),
         ("AVX2 only: archives of one model", "startup.json", tables.startup_table(load("startup.json")), None),
         ("AVX2 only: distinct models (each timed)", "startup-distinct.json",
          tables.startup_table(load("startup-distinct.json")), None)]),  # fmt: skip
    "results/small-data.md": lambda: results_page(
        "Training on a few sentences a label",
        "`make small-data` (`python -m lab small-data`): K real sentences a label from VADER's NYT and Amazon "
        "corpora (three labels), three seeds, each setting trained on the same sample and scored on the same "
        "test sentences; TF-IDF + logistic regression and SetFit (the same MiniLM, contrastive pairs then a "
        "logistic head, in `.venv-setfit`) fitted on the same sample. `hflabels train`'s defaults run the pair "
        "stage (SetFit's recipe written as a standard BERT classifier) wherever 8 epochs would be fewer than 100 "
        "steps (up to 64 sentences a label here), and 20 epochs at 1e-4 from there to 300 steps; the other rows "
        "are hand settings (`--pair-stage off` below 100 steps). The note under the table says which runs are of "
        "which day and machine "
        "([the recipe](../training/recipe.md#small-data)).",
        [("Median test macro-F1", "small-data.json", noted("small-data.json",
          tables.small_data_table(load("small-data.json"))), None)]),
    "results/soak.md": lambda: results_page(
        "Soak and cache",
        "`make soak`: a long closed-loop load, errors and memory over time; `make bench-cache`: the response "
        "cache on a Zipf workload.",
        [("Soak", "soak.json", tables.soak_table(load("soak.json")), None)]
        + [(heading, source, noted(source, tables.soak_table(load(source))), None) for heading, source in (
            ("Two workers, 4 clients", "soak-two-workers-zen5.json"),
            ("Two workers borrowing idle cores, 4 clients", "soak-two-workers-borrowing-zen5.json"),
            ("Two workers borrowing idle cores, a worker killed", "soak-two-workers-borrowing-kill-zen5.json"))]
        + [("Response cache", "bench-cache-results.json", tables.cache_table(load("bench-cache-results.json")),
            None)]),  # fmt: skip
}

with mkdocs_gen_files.open("reference/configuration.md", "w") as page:
    page.write(configuration_reference())
with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(cli_reference())
for path, render in RESULT_PAGES.items():
    with mkdocs_gen_files.open(path, "w") as page:
        page.write(render())
