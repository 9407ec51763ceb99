"""Updating a served model without losing a request, over TorchServe's own model versions.

``deploy`` registers the new version beside the serving one (the default version keeps every
request meanwhile), waits for its worker, probes it on its versioned URL with labelled examples,
and only then makes it the default; a version that fails to load or fails its probe is
unregistered and never receives default traffic. ``rollback`` makes the previous version the
default again. Switching the default is one call in the frontend: requests already queued for a
version finish on it, and later ones go to the new default, so nothing is dropped.

Registering is TorchServe's model API: the server must run with ``enable_model_api=true`` (the
shipped config.properties does, on loopback, behind the management token, with
``allowed_urls=^$`` so only archives already in the local model store can be registered).
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from hflabels.torchserve_control import ServeError, Server
from hflabels.training.data import Example, load_examples

HISTORY_FILE = "deployments.json"


class DeployError(Exception):
    """A deploy or rollback that did not happen; the serving version is untouched."""


@dataclass(frozen=True)
class ProbeReport:
    examples: int
    accuracy: float
    # Examples whose label differs from the version serving before (with expect_same).
    changed: int = 0


@dataclass
class Deployment:
    name: str
    version: str
    previous: str | None
    probe: ProbeReport | None
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        probe = ""
        if self.probe is not None:
            probe = f"; probe: {self.probe.examples} examples, accuracy {self.probe.accuracy:.3f}"
            probe += f", {self.probe.changed} labels changed" if self.probe.changed else ""
        steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in self.seconds.items())
        return f"{self.name}: version {self.version} is the default (was {self.previous}){probe} ({steps})"


def archive_version(archive: Path) -> str:
    """The model version written in a .mar's MANIFEST.json."""
    try:
        with zipfile.ZipFile(archive) as mar:
            manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise DeployError(f"{archive}: not a model archive ({error})") from None
    return str(manifest["model"]["modelVersion"])


class Management:
    """TorchServe's management API for one model name, with the management token."""

    def __init__(self, server: Server, name: str, timeout: float = 600.0) -> None:
        self.server, self.name, self.timeout = server, name, timeout

    def _call(self, method: str, path: str, **params: Any) -> requests.Response:
        headers = self.server.auth(self.server.management_token)
        url = f"{self.server.management_url}{path}"
        return requests.request(method, url, params=params, headers=headers, timeout=self.timeout)

    def versions(self) -> list[dict[str, Any]]:
        response = self._call("GET", f"/models/{self.name}/all")
        if response.status_code == 404:
            raise DeployError(f"no model {self.name!r} is registered; start it first (hflabels serve start)")
        response.raise_for_status()
        return response.json()

    def default_version(self) -> str:
        response = self._call("GET", f"/models/{self.name}")
        response.raise_for_status()
        return str(response.json()[0]["modelVersion"])

    def register(self, archive_name: str) -> None:
        response = self._call("POST", "/models", url=archive_name, model_name=self.name, initial_workers=1,
                              synchronous="true")  # fmt: skip
        if response.status_code != 200:
            raise DeployError(f"registering {archive_name} failed: {_message(response)}")

    def set_default(self, version: str) -> None:
        response = self._call("PUT", f"/models/{self.name}/{version}/set-default")
        if response.status_code != 200:
            raise DeployError(f"making {version} the default failed: {_message(response)}")

    def unregister(self, version: str) -> None:
        self._call("DELETE", f"/models/{self.name}/{version}")


def _message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message", response.text))[:400]
    except ValueError:
        return response.text[:400]


def predictions(server: Server, name: str, version: str, texts: Sequence[str], batch: int = 16) -> list[str]:
    """The best label of each text from one version of a model (its versioned URL)."""
    url = f"{server.inference_url}/predictions/{name}/{version}"
    headers = {"Content-Type": "application/json", **server.auth(server.inference_token)}
    labels: list[str] = []
    for start in range(0, len(texts), batch):
        chunk = list(texts[start : start + batch])
        response = requests.post(url, data=json.dumps({"inputs": chunk}), headers=headers, timeout=120)
        if response.status_code != 200:
            raise DeployError(f"the probe got {response.status_code} from version {version}: {response.text[:300]}")
        labels += [answer["label"] for answer in response.json()]
    return labels


def probe(
    server: Server, name: str, version: str, examples: Sequence[Example], previous: str | None, expect_same: bool
) -> ProbeReport:
    texts = [example.text for example in examples]
    served = predictions(server, name, version, texts)
    accuracy = sum(label == example.label for label, example in zip(served, examples)) / max(1, len(examples))
    changed = 0
    if expect_same and previous is not None:
        before = predictions(server, name, previous, texts)
        changed = sum(a != b for a, b in zip(served, before))
    return ProbeReport(len(examples), accuracy, changed)


def _history(server: Server) -> dict[str, list[str]]:
    path = server.run_dir / HISTORY_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _save_history(server: Server, history: dict[str, list[str]]) -> None:
    (server.run_dir / HISTORY_FILE).write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")


def deploy(
    server: Server,
    name: str,
    archive: Path,
    model_store: Path,
    probe_file: Path | None = None,
    min_accuracy: float = 0.0,
    expect_same: bool = False,
) -> Deployment:
    """Serve ``archive`` as the new default version of ``name``, or raise DeployError and leave
    the serving version as it was."""
    management = Management(server, name)
    version = archive_version(archive)
    previous = management.default_version()
    if any(str(v["modelVersion"]) == version for v in management.versions()):
        raise DeployError(f"{name} version {version} is already registered; archive with another --version")
    examples = load_examples(probe_file, "single_label") if probe_file is not None else []
    # The model API registers from the local store only: the archive goes there first.
    stored = model_store / f"{name}-v{version}.mar"
    if archive.resolve() != stored.resolve():
        shutil.copyfile(archive, stored)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    try:
        management.register(stored.name)
        seconds["load"] = time.monotonic() - started
        report = None
        if examples:
            started = time.monotonic()
            report = probe(server, name, version, examples, previous, expect_same)
            seconds["probe"] = time.monotonic() - started
            if report.accuracy < min_accuracy:
                raise DeployError(f"the probe's accuracy {report.accuracy:.3f} is below {min_accuracy:.3f}")
            if expect_same and report.changed:
                raise DeployError(f"{report.changed} of {report.examples} probe labels differ from version {previous}")
        management.set_default(version)
    except (DeployError, requests.RequestException, ServeError) as error:
        management.unregister(version)
        failures = server.load_failures().get(name)
        reason = f"{error}" + (f" ({failures[-1]})" if failures and "register" in str(error) else "")
        raise DeployError(f"{name} version {version} was not deployed: {reason}; {previous} still serves") from None
    history = _history(server)
    history.setdefault(name, [previous]).append(version)
    _save_history(server, history)
    return Deployment(name, version, previous, report, seconds)


def rollback(server: Server, name: str) -> Deployment:
    """Make the version before the current default the default again (it stays registered)."""
    history = _history(server)
    versions = history.get(name, [])
    if len(versions) < 2:
        raise DeployError(f"{name} has no earlier deployed version to roll back to")
    current, previous = versions[-1], versions[-2]
    management = Management(server, name)
    started = time.monotonic()
    management.set_default(previous)
    history[name] = versions[:-1]
    _save_history(server, history)
    return Deployment(name, previous, current, None, {"switch": time.monotonic() - started})
