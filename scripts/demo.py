#!/usr/bin/env python3
"""`make demo`: fine-tune the demo sentiment model (once), archive it, serve it, show real answers.

The server keeps running afterwards; `make stop` stops it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import archive
import requests
import train
from torchserve_control import ServeError, start, stop

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO_ROOT / "build" / "demo-model"
MODEL_STORE = REPO_ROOT / "model_store"
RUN_DIR = REPO_ROOT / ".serve"
NAME = "sentiment"

EXAMPLES: list[tuple[str, str, object]] = [
    ("one text, raw body", "text/plain", "The staff were friendly and the room was spotless."),
    ("one text, JSON", "application/json", {"inputs": "My order arrived broken and nobody answered my emails."}),
    (
        "a list of texts",
        "application/json",
        {
            "inputs": [
                "The museum is closed on Mondays.",
                "Best pizza I have had in years!",
                "The app crashes on start.",
            ]
        },
    ),
    (
        "every label's score (top_k: null)",
        "application/json",
        {"inputs": "It was fine, I guess.", "parameters": {"top_k": None}},
    ),
]


def ensure_model(retrain: bool) -> None:
    if (DEMO_MODEL / "metrics.json").exists() and not retrain:
        print(f"reusing the fine-tuned model in {DEMO_MODEL.relative_to(REPO_ROOT)} (make demo RETRAIN=1 trains again)")
        return
    print("fine-tuning all-MiniLM-L6-v2 on data/sentiment/train.csv (about half a minute on 2 cores)...")
    status = train.main([
        "--task", "single_label",
        "--train", str(REPO_ROOT / "data" / "sentiment" / "train.csv"),
        "--test", str(REPO_ROOT / "data" / "sentiment" / "test.csv"),
        "--output", str(DEMO_MODEL),
    ])  # fmt: skip
    if status != 0:
        raise SystemExit(status)


def curl_command(url: str, token: str | None, content_type: str, body: object) -> str:
    data = body if isinstance(body, str) else json.dumps(body)
    flag = "--data-binary" if content_type == "text/plain" else "-d"
    auth = f"-H 'Authorization: Bearer {token}' " if token else ""
    return f"curl {auth}-H 'Content-Type: {content_type}' {flag} {shlex.quote(data)} {url}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args(argv)
    ensure_model(args.retrain)
    metrics = json.loads((DEMO_MODEL / "metrics.json").read_text())
    if "test" in metrics:
        test = metrics["test"]
        print(
            f"held-out test set: accuracy {test['accuracy']:.3f}, "
            f"F1 macro {test['f1_macro']:.3f} ({test['examples']} examples)"
        )
    if archive.main([str(DEMO_MODEL), "--name", NAME, "--export-path", str(MODEL_STORE)]) != 0:
        return 1
    if stop(RUN_DIR):
        print("stopped the previous demo server")
    try:
        server = start(REPO_ROOT / "config.properties", MODEL_STORE, [f"{NAME}={NAME}.mar"], RUN_DIR)
    except ServeError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 1
    url, token = server.predictions_url(NAME), server.inference_token
    print(f"\ntorchserve is serving {NAME!r} at {url}\n")
    for title, content_type, body in EXAMPLES:
        data = body if isinstance(body, str) else json.dumps(body)
        response = requests.post(
            url, data=data.encode(), headers={"Content-Type": content_type, **server.auth(token)}, timeout=60
        )
        print(f"# {title}\n$ {curl_command(url, token, content_type, body)}")
        print(f"{response.status_code} {json.dumps(response.json(), ensure_ascii=False)}\n")
    print(f"the server keeps running (logs in {RUN_DIR.relative_to(REPO_ROOT)}/logs); stop it with: make stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
