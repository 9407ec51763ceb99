"""Start, wait for, and stop a TorchServe instance; shared by `hflabels serve`, the demo, tests and benchmarks.

Each instance lives in its own run folder: TorchServe writes its pid file under TMPDIR and its
token file (key_file.json) and logs in its working folder, so pointing both at the run folder
lets several instances (a demo and a test run, say) coexist on one machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import requests

from hflabels.paths import LOG_CONFIG
from hflabels.torchserve_config import read_properties

JAVA_HINT = (
    "TorchServe's frontend needs Java 17 (a JDK). Install it, e.g. "
    "`sudo apt-get install -y openjdk-17-jdk-headless` (Debian/Ubuntu) or `brew install openjdk@17` (macOS), "
    "then make sure `java -version` works"
)
# What the hint above asks for; TorchServe 0.12's frontend is built for Java 17.
MIN_JAVA = 17


class ServeError(Exception):
    pass


def java_version() -> int:
    """The installed Java's major version; raises ServeError with install advice if there is none."""
    java = shutil.which("java")
    if java is None:
        raise ServeError(f"no `java` on PATH. {JAVA_HINT}")
    result = subprocess.run([java, "-version"], capture_output=True, text=True)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if result.returncode != 0 or match is None:
        raise ServeError(f"`java -version` failed. {JAVA_HINT}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise ServeError(f"Java {major} is too old for TorchServe 0.12. {JAVA_HINT}")
    return major


def torchserve_command() -> str:
    beside_python = Path(sys.executable).with_name("torchserve")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("torchserve")
    if found is None:
        raise ServeError("torchserve is not installed in this environment (run `make venv`)")
    return found


@dataclass
class Server:
    run_dir: Path
    inference_url: str
    management_url: str
    metrics_url: str
    # Where each log file ended when this run started: TorchServe appends to the logs of earlier
    # runs, and a failure must show this run's lines.
    log_offsets: dict[str, int] = field(default_factory=dict)

    def mark_logs(self) -> None:
        logs = self.run_dir / "logs"
        self.log_offsets = {path.name: path.stat().st_size for path in logs.glob("*.log")} if logs.is_dir() else {}

    def log_lines(self, name: str) -> list[str]:
        """The lines of log ``name`` written since this run started."""
        path = self.run_dir / "logs" / name
        if not path.exists():
            return []
        with path.open("rb") as stream:
            stream.seek(self.log_offsets.get(name, 0))
            return stream.read().decode("utf-8", errors="replace").splitlines()

    @property
    def key_file(self) -> Path:
        return self.run_dir / "key_file.json"

    def _keys(self) -> dict:
        if not self.key_file.exists():
            return {}
        return json.loads(self.key_file.read_text(encoding="utf-8"))

    @property
    def inference_token(self) -> str | None:
        return self._keys().get("inference", {}).get("key")

    @property
    def management_token(self) -> str | None:
        return self._keys().get("management", {}).get("key")

    def token_expiry(self) -> str | None:
        """When the inference token expires (TorchServe writes it beside the key; 60 minutes after
        start unless token_expiration_min says otherwise)."""
        return self._keys().get("inference", {}).get("expiration time")

    def token_note(self) -> str:
        expiry = self.token_expiry()
        when = f", expires {expiry}" if expiry else ""
        return (f"inference token in {self.key_file}{when}; a missing, wrong or expired token gets TorchServe's "
                "400 InvalidKeyException (reread the key file after a refresh, docs: operations/security)")  # fmt: skip

    def model_names(self) -> list[str]:
        response = requests.get(f"{self.management_url}/models", headers=self.auth(self.management_token), timeout=10)
        response.raise_for_status()
        return [model["modelName"] for model in response.json().get("models", [])]

    def auth(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def frontend_pid(self) -> int | None:
        """The frontend's (the JVM's) process id; its model workers are its descendants."""
        return _pid(self.run_dir)

    def predictions_url(self, model: str) -> str:
        return f"{self.inference_url}/predictions/{model}"

    def describe_model(self, model: str) -> list[dict]:
        response = requests.get(
            f"{self.management_url}/models/{model}", headers=self.auth(self.management_token), timeout=10
        )
        response.raise_for_status()
        return response.json()

    def ready_workers(self, model: str) -> int:
        try:
            description = self.describe_model(model)
        except requests.HTTPError as error:
            if "InvalidKeyException" in error.response.text:
                raise ServeError(f"the management API refused the token in {self.key_file}") from None
            return 0
        except (requests.RequestException, ValueError):
            return 0
        return sum(1 for worker in description[0].get("workers", []) if worker.get("status") == "READY")

    def log_tail(self, name: str = "model_log.log", lines: int = 40) -> str:
        return "\n".join(self.log_lines(name)[-lines:])

    def load_failures(self) -> dict[str, list[str]]:
        """The handler's one-line load errors from the model log, by model, oldest first."""
        found: dict[str, list[str]] = {}
        # e.g. "... W-9001-reviews_1.0-stdout MODEL_LOG - model load failed: <message>"
        pattern = re.compile(r"W-\d+-(.+?)_[^_\s]+-stdout .*model load failed: (.*)")
        for line in self.log_lines("model_log.log"):
            match = pattern.search(line)
            if match:
                found.setdefault(match.group(1), []).append(match.group(2).strip())
        return found

    def registration_failures(self, models: Collection[str] | None = None) -> list[str]:
        """The frontend's refusals of a --models archive in this run: one it could not register, or a
        model whose workers died while loading it twice (TorchServe would retry with a growing
        back-off until maxRetryTimeoutInSec). ``models``: count deaths of these only, so that a
        model nobody waits for (one broken on purpose) does not fail the start of the others."""
        refused = re.compile(r"(Model not found at: .*|Failed to register model.*)")
        died = re.compile(r"Load model failed: (\S+), error: (.*)")
        found, deaths = [], Counter()
        for line in self.log_lines("ts_log.log"):
            if match := refused.search(line):
                found.append(match.group(1).strip())
            elif match := died.search(line):
                model = match.group(1).rstrip(",")
                if models is not None and model not in models:
                    continue
                deaths[model] += 1
                if deaths[model] == 2:
                    found.append(f"{model}: {match.group(2).strip()} twice while loading; its log:\n"
                                 f"{self.log_tail('model_log.log', 15)}")  # fmt: skip
        return found

    def curl_example(self, model: str, body: dict | None = None) -> str:
        """A curl for ``model`` with ``body`` (see hflabels/sample_request.py), quoted for a shell."""
        token = self.inference_token
        auth = f'-H "Authorization: Bearer {token}" ' if token else ""
        payload = json.dumps(body if body is not None else {"inputs": "Replace this with a text of your own."})
        return f"curl {auth}-H 'Content-Type: application/json' -d {shlex.quote(payload)} {self.predictions_url(model)}"


def _environment(run_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env.update(
        TMPDIR=str(run_dir / "tmp"),
        LOG_LOCATION=str(run_dir / "logs"),
        METRICS_LOCATION=str(run_dir / "logs"),
        # Everything the handler loads is in the archive; never reach for a hub.
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def server_for(config: Path, run_dir: Path) -> Server:
    properties = read_properties(config)
    return Server(
        run_dir=run_dir,
        inference_url=properties.get("inference_address", "http://127.0.0.1:8080"),
        management_url=properties.get("management_address", "http://127.0.0.1:8081"),
        metrics_url=properties.get("metrics_address", "http://127.0.0.1:8082"),
    )


def start(
    config: Path,
    model_store: Path,
    models: list[str],
    run_dir: Path,
    timeout: float = 300.0,
    wait_for: list[str] | None = None,
    log_config: Path | None = LOG_CONFIG,
    environment: dict[str, str] | None = None,
) -> Server:
    """Start TorchServe and return once every model in ``wait_for`` (default: all) has a READY worker.

    With no ``models``, the config's ``model_snapshot`` says which to load (as in a KServe store).
    ``log_config`` None starts it as a plain ``torchserve --start`` would: logging as the config's
    vmargs say, relative to ``run_dir`` (where it starts, and writes key_file.json). ``environment``
    adds variables to the frontend's, which its workers inherit.
    """
    java_version()
    run_dir = run_dir.resolve()
    for folder in (run_dir, run_dir / "tmp", run_dir / "logs"):
        folder.mkdir(parents=True, exist_ok=True)
    server = server_for(config, run_dir)
    command = [
        torchserve_command(), "--start", "--ncs",
        "--model-store", str(model_store.resolve()),
        "--ts-config", str(config.resolve()),
    ]  # fmt: skip
    if log_config is not None:
        command += ["--log-config", str(log_config)]
    if models:
        command += ["--models", *models]
    server.mark_logs()
    with open(run_dir / "logs" / "launcher.log", "a", encoding="utf-8") as launcher_log:
        result = subprocess.run(
            command, cwd=run_dir, env=_environment(run_dir, environment), stdout=launcher_log, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        raise ServeError(f"torchserve --start failed; see {run_dir / 'logs' / 'launcher.log'}")
    names = wait_for if wait_for is not None else [spec.split("=", 1)[0] for spec in models]
    try:
        wait_until_ready(server, names, timeout)
    except ServeError:
        stop(run_dir)
        raise
    return server


def wait_until_ready(server: Server, models: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(server.ready_workers(model) > 0 for model in models):
            return
        failures = server.load_failures()
        failed = [f"{model}: {failures[model][-1]}" for model in models if model in failures]
        if failed:
            raise ServeError("the model failed to load: " + " | ".join(failed))
        refused = server.registration_failures(models)
        if refused:
            raise ServeError("torchserve refused the archive: " + " | ".join(refused))
        if not is_running(server.run_dir):
            raise ServeError(f"torchserve exited during start-up:\n{server.log_tail('ts_log.log')}")
        time.sleep(0.5)
    raise ServeError(f"models {models} not ready after {timeout:.0f} s:\n{server.log_tail()}")


def _pid(run_dir: Path) -> int | None:
    pid_file = run_dir / "tmp" / ".model_server.pid"
    if not pid_file.exists():
        return None
    try:
        return int(pid_file.read_text().strip())
    except ValueError:
        return None


def is_running(run_dir: Path) -> bool:
    pid = _pid(run_dir)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exited(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` is gone within ``timeout`` seconds (reaped, if it is our child)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def stop(run_dir: Path, timeout: float = 60.0, kill_timeout: float = 10.0) -> bool:
    """Stop the instance of ``run_dir``; True if one was running (it is gone on return).

    ``torchserve --stop`` first; a frontend still alive ``timeout`` seconds later gets SIGTERM,
    then SIGKILL; one that survives even that raises ServeError."""
    run_dir = run_dir.resolve()
    if not is_running(run_dir):
        return False
    pid = _pid(run_dir)
    subprocess.run(
        [torchserve_command(), "--stop"], cwd=run_dir, env=_environment(run_dir),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if pid is None or _exited(pid, timeout):
        return True
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, signal_number)
        except ProcessLookupError:
            return True
        if _exited(pid, kill_timeout):
            return True
    raise ServeError(f"torchserve (pid {pid}) is still running after SIGKILL")
