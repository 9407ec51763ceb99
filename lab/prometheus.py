"""Reading the handler's counters back from TorchServe's Prometheus endpoint."""

from __future__ import annotations

import requests


def token_counters(metrics_url: str) -> tuple[float, float]:
    """(tokens fed, tokens computed with padding) so far, from the handler's Prometheus counters."""
    text = requests.get(f"{metrics_url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        for name in ("TokensTotal", "PaddedTokensTotal"):
            if line.startswith(name + "{"):
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values.get("TokensTotal", 0.0), values.get("PaddedTokensTotal", 0.0)


def padding_ratio(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    real, padded = after[0] - before[0], after[1] - before[1]
    return None if padded <= 0 else round(1 - real / padded, 4)


def counter_total(metrics_url: str, name: str, model: str | None = None) -> float:
    """The sum of one counter's samples (of one model, if given) from the Prometheus endpoint."""
    text = requests.get(f"{metrics_url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and (model is None or f'ModelName="{model}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def gauge_values(metrics_url: str, names: tuple[str, ...], model: str) -> dict[str, float]:
    """The latest value of each named gauge of ``model`` on the Prometheus endpoint."""
    text = requests.get(f"{metrics_url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name in names and f'ModelName="{model}"' in line:
            found[name] = float(line.rsplit(" ", 1)[1])
    return found
