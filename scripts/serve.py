#!/usr/bin/env python3
"""Start and stop TorchServe with this project's config.properties, and print a working curl.

scripts/serve.py start NAME [NAME ...]   # serves model_store/NAME.mar, waits until READY
scripts/serve.py stop
scripts/serve.py status
scripts/serve.py check-java
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torchserve_control import ServeError, is_running, java_version, server_for, start, stop

REPO_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "config.properties")
    parser.add_argument("--run-dir", type=Path, default=REPO_ROOT / ".serve", help="pid, token file and logs")
    commands = parser.add_subparsers(dest="command", required=True)
    start_parser = commands.add_parser("start", help="start torchserve and wait until the models are ready")
    start_parser.add_argument("models", nargs="+", help="NAME (serves NAME.mar) or NAME=FILE.mar")
    start_parser.add_argument("--model-store", type=Path, default=REPO_ROOT / "model_store")
    start_parser.add_argument("--timeout", type=float, default=300.0)
    commands.add_parser("stop", help="stop the torchserve started from this run folder")
    commands.add_parser("status", help="say whether it runs, and how to call it")
    commands.add_parser("check-java", help="check that a Java TorchServe can use is installed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "check-java":
            print(f"java {java_version()}: ok")
        elif args.command == "start":
            if is_running(args.run_dir):
                raise ServeError(f"already running from {args.run_dir}; stop it with: scripts/serve.py stop")
            specs = [spec if "=" in spec else f"{spec}={spec}.mar" for spec in args.models]
            for spec in specs:
                archive = args.model_store / spec.split("=", 1)[1]
                if not archive.exists():
                    raise ServeError(f"{archive} does not exist; build it with scripts/archive.py")
            server = start(args.config, args.model_store, specs, args.run_dir, timeout=args.timeout)
            print(f"torchserve is ready at {server.inference_url} (logs in {args.run_dir / 'logs'})")
            for spec in specs:
                print(server.curl_example(spec.split("=", 1)[0]))
            print("stop it with: make stop  (or scripts/serve.py stop)")
        elif args.command == "stop":
            print("stopped" if stop(args.run_dir) else "not running")
        elif args.command == "status":
            if not is_running(args.run_dir):
                print("not running")
                return 1
            server = server_for(args.config, args.run_dir)
            print(f"running at {server.inference_url}; token in {server.key_file}")
    except ServeError as error:
        print(f"serve.py: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
