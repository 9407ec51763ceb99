"""Markdown tables of the lab's results JSON: what the docs' results pages and the README's
headline show. Pure functions of the documents (stdlib only), so the docs build draws them without
the project's venv, and a test holds the README's headline to the JSON it came from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|")


def provenance(document: dict[str, Any]) -> str:
    """One line: machine, date, commit, model."""
    machine = document.get("machine") or {}
    cpu = machine.get("cpu") or machine.get("processor") or "machine not recorded"
    if machine.get("units"):
        cpu = f"{cpu} ({machine['units']})"
    cores = machine.get("cores")
    when = (document.get("measured_at") or "date not recorded")[:10]
    parts = [f"{cpu}" + (f", {cores} cores" if cores else ""), f"measured {when}"]
    if document.get("git_commit"):
        parts.append(f"commit `{document['git_commit']}`")
    model = document.get("model") or document.get("model_dir")
    if model:
        parts.append(f"model `{model}`")
    versions = {k: machine.get(k) for k in ("torch", "transformers", "torchserve") if machine.get(k)}
    if versions:
        parts.append(", ".join(f"{k} {v}" for k, v in versions.items()))
    return "; ".join(parts)


def peers_headline(document: dict[str, Any]) -> str:
    """Requests/s at 1 and 32 clients, and p50 at 1, of each server that ran (bench-peers)."""
    rows = []
    ours = document["servers"].get("this handler", {})
    for name, found in document["servers"].items():
        if "32" not in found:
            continue
        ratio = found["32"]["throughput"] / ours["32"]["throughput"] if "32" in ours else None
        rows.append((name, round(found["1"]["throughput"], 1), round(found["1"]["p50_ms"], 1),
                     round(found["32"]["throughput"], 1), f"{ratio:.2f}x" if ratio else None))  # fmt: skip
    return table(("server", "req/s, 1 client", "p50 ms, 1 client", "req/s, 32 clients", "vs this handler at 32"), rows)


def bench_tables(document: dict[str, Any]) -> str:
    """In-process limits and served runs of one ``python -m lab bench`` document."""
    parts = []
    in_process = document.get("in_process", {})
    if in_process.get("precision"):
        parts.append(f"Precision: {in_process['precision']}.")
    if in_process.get("dtype_auto"):
        parts.append(f"`{in_process['dtype_auto']}`")
    limits = []
    for variant in ("mixed", "long"):
        found = in_process.get(variant)
        if found:
            limits.append((variant, round(found["best"], 1), found.get("best_layout"),
                           _round(found.get("chunks_of_32"))))  # fmt: skip
    if limits:
        parts.append(table(("inputs", "in-process limit (inputs/s)", "best layout", "handler, arrival chunks of 32"), limits))  # noqa: E501
    if "single_input_ms" in in_process:
        parts.append(f"One input alone, in-process: {in_process['single_input_ms']:.1f} ms.")
    served = []
    for variant, runs in document.get("served", {}).items():
        for clients in sorted(runs, key=int):
            run = runs[clients]
            served.append((variant, clients, round(run["throughput"], 1), round(run["p50_ms"], 1),
                           round(run["p99_ms"], 1), run.get("errors"), run.get("ratio_to_in_process")))  # fmt: skip
    if served:
        parts.append(table(("inputs", "clients", "req/s", "p50 ms", "p99 ms", "errors", "served / in-process"), served))
    buckets = document.get("buckets") or {}
    if buckets:
        parts.append(table(("~tokens per input", "served /s", "in-process /s", "ratio"),
                           [(tokens, round(b["served"], 1), round(b["in_process"], 1), b["ratio"])
                            for tokens, b in sorted(buckets.items(), key=lambda item: int(item[0]))]))  # fmt: skip
    return "\n\n".join(parts)


def _round(value: Any) -> Any:
    return round(value, 1) if isinstance(value, float) else value


def accelerations_table(document: dict[str, Any]) -> str:
    rows = []
    for name, found in document["variants"].items():
        if "error" in found:
            rows.append((name, None, None, None, None, f"not run: {found['error'][:80]}"))
            continue
        status = "offered" if found.get("offered") else "measured only"
        rows.append((name, round(found["inputs_per_s"], 1), f"x{found['speedup']:.2f}", found["label_agreement"],
                     f"{found['max_score_difference']:.1e}", status))  # fmt: skip
    return table(("variant", "inputs/s", "speed-up", "labels equal", "largest score change", "status"), rows)


def real_data_table(document: dict[str, Any]) -> str:
    systems = ("vader", "tfidf_lr_movies", "tfidf_lr_all_domains", "minilm_movies", "minilm_all_domains")
    rows = []
    for domain, found in document["classification"].items():
        rows.append((domain, found.get("examples"),
                     *(found[s]["f1_macro"] if s in found else None for s in systems)))  # fmt: skip
    return table(("domain", "test examples", "VADER", "TF-IDF+LR (movies)", "TF-IDF+LR (all)", "MiniLM (movies)",
                  "MiniLM (all)"), rows)  # fmt: skip


def drift_table(document: dict[str, Any]) -> str:
    """The served gauges after one window per traffic (``make guarantees``); results written before
    the drift tests had p-values show their PSI and JS."""
    drift = document.get("drift", {})
    if any("DriftLabelP" in g for g in drift.values()):
        keys = ("DriftInputP", "DriftLabelP", "DriftConfidenceP", "DriftLabelPSI", "DriftConfidencePSI")
        heads = ("inputs p", "labels p", "confidence p", "label PSI", "confidence PSI")
    else:
        keys = ("DriftLabelPSI", "DriftLabelJS", "DriftConfidencePSI", "DriftConfidenceJS")
        heads = ("label PSI", "label JS", "confidence PSI", "confidence JS")
    rows = [(domain, *(round(g[k], 4) if k in g else None for k in keys), int(g["DriftAlarm"]))
            for domain, g in drift.items()]  # fmt: skip
    return table(("traffic", *heads, "DriftAlarm"), rows)


def drift_alarm_tables(document: dict[str, Any]) -> str:
    """``python -m lab drift``: per model folder, false alarms, detection and power on mixes."""
    parts = []
    for name, found in document["models"].items():
        alarms = found["false_alarms"]
        parts.append(f"**{name}** (window {found['window']}, level {found['level']:g}, "
                     f"{found['reference_inputs']} reference representations)\n")  # fmt: skip
        parts.append(table(
            ("in-domain windows", "rejected (any test)", "inputs test", "labels test", "confidence test",
             "old rule (PSI 0.25 / JS 0.2)"),
            [(alarms["windows"], alarms["any_test"], alarms["inputs_test"], alarms["label_test"],
              alarms["confidence_test"], alarms["old_rule_of_thumb"])]))  # fmt: skip
        parts.append(table(
            ("shift to", "streams", "alarmed", "median answers to alarm", "most answers to alarm",
             "median answers to clear"),
            [(domain, d["streams"], d["detected"], d["median_answers_to_alarm"], d["max_answers_to_alarm"],
              d["median_answers_to_clear"]) for domain, d in found["detection"].items()]))  # fmt: skip
        shares = sorted({share for mixes in found["power"].values() for share in mixes}, key=float)
        parts.append(table(
            ("windows rejected: foreign share", *(f"{float(s):.0%}" for s in shares)),
            [(f"{domain} ({kind.replace('_', ' ')})", *(mixes[s][kind] for s in shares))
             for domain, mixes in found["power"].items() for kind in ("any_test", "old_rule_of_thumb")]))  # fmt: skip
    return "\n\n".join(parts)


def calibration_tables(document: dict[str, Any]) -> str:
    """``python -m lab calibration``: per model, each calibrator's test ECE with its noise, and the
    conformal coverage on test of the shipped calibrator's sets."""
    parts = []
    for name, found in document["models"].items():
        parts.append(f"**{name}**: fitted on {found['calibration_examples']} of {found['validation_examples']} "
                     f"validation examples (the seeded half `hflabels train` uses), measured on "
                     f"{found['test_examples']} test examples\n")  # fmt: skip
        rows = []
        with_bf16 = all("bf16_served_change" in row for row in found["calibrators"].values())
        for calibrator, row in found["calibrators"].items():
            low, high = row["ece_interval_90"]
            mass_low, mass_high = row["ece_equal_mass_interval_90"]
            halves = row["halves"]
            rows.append((calibrator, f"{row['ece']:.3f} ({low:.3f}-{high:.3f})",
                         f"{row['ece_equal_mass']:.3f} ({mass_low:.3f}-{mass_high:.3f})",
                         f"{halves['ece_mean']:.3f} / {halves['ece_max']:.3f}", f"{row['nll']:.3f}",
                         f"{row['accuracy']:.3f}"))  # fmt: skip
            if with_bf16:
                change = row["bf16_served_change"]
                over = 100 * change["share_over_tolerance"]
                rows[-1] += (f"{change['max']:.4f} / {change['p99']:.4f} / {over:.2f}%",)
        parts.append(table(("calibrator", "test ECE, 15 equal-width bins (90% bootstrap)",
                            "test ECE, 15 equal-mass bins (90% bootstrap)",
                            f"ECE over {found['calibrators']['none']['halves']['count']} random halves: mean / worst",
                            "test NLL", "test accuracy")
                           + (("bf16 autocast's change of a served score: max / 99th pct. / rows over 0.02",)
                              if with_bf16 else ()), rows))  # fmt: skip
        parts.append(table(("prediction sets (LAC) at", "test coverage", "mean set size"),
                           [(level, f"{v['coverage']:.3f}", f"{v['mean_set_size']:.2f}")
                            for level, v in found["conformal_lac_on_test"].items()]))  # fmt: skip
    return "\n\n".join(parts)


def coverage_table(document: dict[str, Any]) -> str:
    resplits = document.get("resplits", {})
    rows = [(key, f"{v['mean_coverage']:.3f}", f"{v['sd_coverage']:.3f}", f"{v['mean_size']:.2f}")
            for key, v in resplits.items() if isinstance(v, dict)]  # fmt: skip
    return table(("method and level", "mean coverage", "sd", "mean set size"), rows)


def imbalance_table(document: dict[str, Any]) -> str:
    rows = []
    for name, found in document["summary"].items():
        rows.append((name, *(found[k]["median"] if isinstance(found.get(k), dict) else found.get(k)
                             for k in ("f1_macro", "rare_recall", "ece_before", "ece_after"))))  # fmt: skip
    return table(("strategy", "macro-F1", f"{document.get('rare', 'rare')} recall", "ECE before", "ECE after"), rows)


def rare_class_table(document: dict[str, Any]) -> str:
    """``python -m lab rare-class``: per ratio, training and decision rule, the test figures
    (200 rare) and macro-F1 at the training prior; medians over seeds, with their count."""
    rows = []
    for key, found in document["summary"].items():
        ratio, training, rule = key.split("|")
        test, natural = found["test"], found["at_training_prior"]
        rows.append((f"{ratio}:1", training, rule, f"{test['rare_recall']['median']:.2f}",
                     f"{test['rare_precision']['median']:.2f}", f"{test['balanced_accuracy']['median']:.3f}",
                     f"{test['macro_f1']['median']:.3f}", f"{natural['macro_f1']['median']:.3f}",
                     found["seeds"]))  # fmt: skip
    return table(("ratio", "training", "decision", "rare recall", "rare precision", "balanced accuracy",
                  "macro-F1 (test)", "macro-F1 at the training prior", "seeds"), rows)  # fmt: skip


def soak_table(document: dict[str, Any]) -> str:
    memory = document.get("memory_mb") or []
    first, last = (memory[0], memory[-1]) if memory else ({}, {})
    return table(("requests", "clients", "seconds", "req/s", "p50 ms", "p99 ms", "statuses", "memory at start", "memory at end"),  # noqa: E501
                 [(document["requests"], document["concurrency"], document["seconds"], document["throughput"],
                   document["p50_ms"], document["p99_ms"], document["statuses"], first, last)])  # fmt: skip


def startup_table(document: dict[str, Any]) -> str:
    """Seconds until every model was ready, cold and after a restart (``python -m lab startup``)."""
    kind = "distinct models" if document.get("distinct") else "archives of one model"
    if document.get("workers", 1) > 1:
        kind += f", {document['workers']} workers each"
    rows = [(count, kind, run["cold_seconds"], run["restart_seconds"])
            for count, run in sorted(document["runs"].items(), key=lambda item: int(item[0]))]  # fmt: skip
    return table(("models started together", "what", "all ready, cold (s)", "all ready after a restart (s)"), rows)


def worker_split_table(document: dict[str, Any]) -> str:
    """``python -m lab worker-split``: the handler's in-process rate per layout of the cores, with
    each layout's share of the first (one process on every thread, chunks of 32)."""
    medians = document["medians"]
    first = next(iter(medians.values()))
    return table(("layout", "answers/s (median)", "of one process", "rounds"),
                 [(name, value, f"{value / first:.2f}", ", ".join(str(r) for r in document["rounds"][name]))
                  for name, value in medians.items()])  # fmt: skip


def small_data_table(document: dict[str, Any]) -> str:
    """Median test macro-F1 per training size and setting (``python -m lab small-data``)."""
    sizes = document["median_f1_macro"]
    settings = sorted({name for found in sizes.values() for name in found})
    return table(("training data", *settings), [(size, *(found.get(name) for name in settings))
                                                 for size, found in sizes.items()])  # fmt: skip


def cache_table(document: dict[str, Any]) -> str:
    return table(("run", "req/s", "p50 ms", "errors"),
                 [(name, round(document[name]["throughput"], 1), round(document[name]["p50_ms"], 1),
                   document[name]["errors"]) for name in ("uncached", "cached")]) + (
        f"\n\nHit rate {document['hit_rate']:.2f}, speed-up x{document['speedup']:.2f}.")  # fmt: skip


def serving_modes_table(document: dict[str, Any]) -> str:
    """``python -m lab serving-modes``: per mode and load, throughput (and its share of the handler's
    own in-process rate), p50 and p99, and the CPU each part took per request."""
    rows = []
    for name, found in document["modes"].items():
        for kind in ("closed", "open"):
            for level, run in found[kind].items():
                load = f"{level} clients" if kind == "closed" else f"Poisson at {float(level):.0%}"
                cpu = run["cpu_ms_per_request"]
                # The floor has no model: a share of the model's in-process rate says nothing of it.
                share = "-" if found.get("floor") else f"{run['ratio_to_in_process']:.2f}"
                rows.append((name, load, f"{run['throughput']:.1f}", share,
                             f"{run['p50_ms']:.1f}", f"{run['p99_ms']:.1f}", run["errors"],
                             f"{cpu['client']:.2f} / {cpu['frontend']:.2f} / {cpu['workers']:.2f}"))  # fmt: skip
    body = table(("mode", "load", "answers/s", "of in-process", "p50 ms", "p99 ms", "errors",
                  "CPU ms/request: client / frontend / workers"), rows)  # fmt: skip
    left_out = [f"*Left out: {name}: {found['why']}.*" for name, found in document.get("invalid_modes", {}).items()]
    return "\n\n".join([body, *left_out])


def lone_request_table(document: dict[str, Any]) -> str:
    """One client: each mode's median over one input alone in-process."""
    single = document["in_process"]["single_input_ms"]
    floor = document.get("floor_lone_request_p50_ms")
    rows = [(name, f"{document['modes'][name]['closed']['1']['p50_ms']:.1f}", f"{single:.1f}", f"+{extra:.1f}",
             *([f"{extra - floor:+.1f}"] if floor is not None else []))
            for name, extra in document["lone_request_overhead_ms"].items()]  # fmt: skip
    heads = ("mode", "p50 at 1 client (ms)", "one input in-process (ms)", "added by serving (ms)")
    if floor is None:
        return table(heads, rows)
    # The floor's round trip (TorchServe, protocol, client, no model) is in every served request.
    return table((*heads, f"beyond TorchServe's floor of {floor:.1f} ms"), rows)
