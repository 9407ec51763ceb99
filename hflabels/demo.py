"""The demo: fine-tune the demo sentiment model (once), archive it, serve it, show real answers."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import requests

from hflabels.archiving import archive
from hflabels.paths import BUILD, MODEL_STORE, REPO_ROOT, RUN_DIR, SENTIMENT_DATA, TORCHSERVE_CONFIG
from hflabels.torchserve_control import start, stop
from hflabels.training.trainer import TrainOptions, train

DEMO_MODEL = BUILD / "demo-model"
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


def model_or_demo(model_dir: Path | None) -> Path:
    """``model_dir``, or the demo model (trained first if it is not there yet)."""
    if model_dir is not None:
        return model_dir
    ensure_model(retrain=False)
    return DEMO_MODEL


def ensure_model(retrain: bool) -> None:
    if (DEMO_MODEL / "metrics.json").exists() and not retrain:
        print(f"reusing the fine-tuned model in {DEMO_MODEL.relative_to(REPO_ROOT)} (make demo RETRAIN=1 trains again)")
        return
    print("fine-tuning all-MiniLM-L6-v2 on data/sentiment/train.csv (about a minute and a half on 2 cores)...")
    train(
        TrainOptions(
            task="single_label",
            train=SENTIMENT_DATA / "train.csv",
            test=SENTIMENT_DATA / "test.csv",
            output=DEMO_MODEL,
            quiet=True,
        )
    )


def curl_command(url: str, token: str | None, content_type: str, body: object) -> str:
    data = body if isinstance(body, str) else json.dumps(body)
    flag = "--data-binary" if content_type == "text/plain" else "-d"
    auth = f"-H 'Authorization: Bearer {token}' " if token else ""
    return f"curl {auth}-H 'Content-Type: {content_type}' {flag} {shlex.quote(data)} {url}"


def run_demo(retrain: bool) -> None:
    """Train (once), archive, serve and print the example requests with their real answers;
    raises ServeError, ArchiveError or DataError naming what went wrong."""
    ensure_model(retrain)
    metrics = json.loads((DEMO_MODEL / "metrics.json").read_text())
    if "test" in metrics:
        test = metrics["test"]
        print(
            f"held-out test set: accuracy {test['accuracy']:.3f}, "
            f"F1 macro {test['f1_macro']:.3f} ({test['examples']} examples)"
        )
        calibration = test.get("calibration", {})
        if "after" in calibration:
            before, after = calibration["before"], calibration["after"]
            print(
                f"served calibrated (temperature {metrics['calibration']['temperature']}): expected calibration "
                f"error {before['ece']:.3f} -> {after['ece']:.3f}, NLL {before['nll']:.3f} -> {after['nll']:.3f}, "
                f"Brier {before['brier']:.3f} -> {after['brier']:.3f} on the test set"
            )
    print(archive(DEMO_MODEL, NAME, export_path=MODEL_STORE).summary())
    if stop(RUN_DIR):
        print("stopped the previous demo server")
    server = start(TORCHSERVE_CONFIG, MODEL_STORE, [f"{NAME}={NAME}.mar"], RUN_DIR)
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
