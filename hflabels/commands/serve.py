"""Start and stop TorchServe with this project's config.properties, and print a working curl.

    hflabels serve start NAME [NAME ...]   # serves model_store/NAME.mar, waits until READY
    hflabels serve status
    hflabels serve deploy NAME NEW.mar [--probe FILE]
    hflabels serve rollback NAME
    hflabels serve stop
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from hflabels.paths import MODEL_STORE, RUN_DIR, TORCHSERVE_CONFIG


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=TORCHSERVE_CONFIG, help="TorchServe's config.properties")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help="pid, token file and logs")
    commands = parser.add_subparsers(dest="action", required=True)
    start_parser = commands.add_parser("start", help="start torchserve and wait until the models are ready")
    start_parser.add_argument("models", nargs="+", help="NAME (serves MODEL_STORE/NAME.mar) or NAME=FILE.mar "
                              "(a file in the store, or a path elsewhere: copied into the store)")  # fmt: skip
    start_parser.add_argument("--model-store", type=Path, default=MODEL_STORE, help="folder of .mar archives")
    start_parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait until every model has a READY worker"
    )
    deploy_parser = commands.add_parser(
        "deploy", help="serve a new version of a running model; the old one serves until the new one passes"
    )
    deploy_parser.add_argument("name", help="the model's name")
    deploy_parser.add_argument("archive", type=Path, help="the new version's .mar (its version: archive --version)")
    deploy_parser.add_argument("--probe", type=Path, help="labelled examples (text,label) the new version must pass")
    deploy_parser.add_argument("--min-accuracy", type=float, default=0.0, help="on the probe, at least this")
    deploy_parser.add_argument(
        "--expect-same", action="store_true", help="every probe label equal to the old version's"
    )
    deploy_parser.add_argument("--model-store", type=Path, default=MODEL_STORE, help="folder of .mar archives")
    rollback_parser = commands.add_parser("rollback", help="make the previously deployed version the default again")
    rollback_parser.add_argument("name", help="the model's name")
    commands.add_parser("stop", help="stop the torchserve started from this run folder")
    commands.add_parser("status", help="say whether it runs, and how to call it")
    commands.add_parser("check-java", help="check that a Java TorchServe can use is installed")


def store_spec(spec: str, model_store: Path) -> str:
    """``NAME=FILE.mar`` as torchserve takes it: a file in the model store. An archive given by a
    path elsewhere is copied into the store first (torchserve reads --models from the store only)."""
    from hflabels.torchserve_control import ServeError

    name, _, file = spec.partition("=")
    file = file or f"{name}.mar"
    given = Path(file)
    if given.is_absolute() or len(given.parts) > 1:
        if not given.is_file():
            raise ServeError(f"{given} does not exist; build it with: hflabels archive")
        model_store.mkdir(parents=True, exist_ok=True)
        target = model_store / given.name
        if not target.exists() or not target.samefile(given):
            shutil.copyfile(given, target)
        return f"{name}={given.name}"
    if not (model_store / file).exists():
        raise ServeError(f"{model_store / file} does not exist; build it with: hflabels archive")
    return f"{name}={file}"


def run(args: argparse.Namespace) -> int:
    import requests

    from hflabels.deployment import DeployError, deploy, rollback
    from hflabels.sample_request import sample_body
    from hflabels.torchserve_control import ServeError, is_running, java_version, server_for, start, stop
    from hflabels.training.data import DataError

    try:
        if args.action == "check-java":
            print(f"java {java_version()}: ok")
        elif args.action == "start":
            if is_running(args.run_dir):
                raise ServeError(f"already running from {args.run_dir}; stop it with: make stop")
            specs = [store_spec(spec, args.model_store) for spec in args.models]
            server = start(args.config, args.model_store, specs, args.run_dir, timeout=args.timeout)
            print(f"torchserve is ready at {server.inference_url} (logs in {args.run_dir / 'logs'})")
            print(server.token_note())
            for spec in specs:
                name, _, file = spec.partition("=")
                print(server.curl_example(name, sample_body(args.model_store / file)))
            print("stop it with: make stop  (or hflabels serve stop)")
        elif args.action in ("deploy", "rollback"):
            if not is_running(args.run_dir):
                raise ServeError(f"no torchserve runs from {args.run_dir}; start it with: hflabels serve start")
            server = server_for(args.config, args.run_dir)
            if args.action == "deploy":
                done = deploy(server, args.name, args.archive, args.model_store, args.probe, args.min_accuracy,
                              args.expect_same)  # fmt: skip
            else:
                done = rollback(server, args.name)
            print(done.summary())
        elif args.action == "stop":
            print("stopped" if stop(args.run_dir) else "not running")
        elif args.action == "status":
            if not is_running(args.run_dir):
                print("not running")
                return 1
            server = server_for(args.config, args.run_dir)
            print(f"running at {server.inference_url}")
            print(server.token_note())
            try:
                names = server.model_names()
            except requests.RequestException as error:
                raise ServeError(f"the management API did not answer: {error}") from None
            for name in names:
                print(f"{name}: {server.ready_workers(name)} READY worker(s)")
                print(f"  {server.curl_example(name, sample_body(MODEL_STORE / f'{name}.mar'))}")
    except (ServeError, DeployError, DataError) as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 1
    return 0
