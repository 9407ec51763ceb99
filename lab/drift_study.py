"""The drift alarm on real shifts (``python -m lab drift``), in-process with the served code.

A movie-domain model folder (as ``hflabels train`` wrote it, and again after ``hflabels
calibrate`` on the movie validation split) answers the VADER test splits with its own runner,
keeping each input's representation as the served pass does. The answers are then fed to the
served monitor's pieces (``DriftWindow``, ``window_tests``, ``AlarmState``) at the folder's own
settings, to count:

1. false alarms: windows drawn at random from the in-domain (movie) test split, the share in
   which a test rejects, against the stated level; also the old rule of thumb (PSI > 0.25 or JS >
   0.2) on the same windows;
2. detection: streams of in-domain traffic, then a foreign domain, then in-domain again; answers
   from the shift until the alarm, and windows until it clears;
3. power: windows mixing a share of foreign inputs into in-domain ones, the share rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from handler.api.request_parsing import RequestBody
from handler.postprocess.monitoring import AlarmState, DriftWindow, ReferenceSample, window_tests
from handler.serving.drift_monitor import reference_sample
from hflabels.evaluation import folder_runner
from hflabels.training.data import load_examples

FOREIGN = ("tweets", "nyt", "amazon")
MIXES = (0.1, 0.25, 0.5, 1.0)
OLD_PSI, OLD_JS = 0.25, 0.2


@dataclass(frozen=True)
class Answers:
    labels: np.ndarray
    confidence: np.ndarray
    representations: np.ndarray

    def take(self, rows: Sequence[int]) -> Answers:
        rows = np.asarray(rows)
        return Answers(self.labels[rows], self.confidence[rows], self.representations[rows])


def answers_of(runner: Any, texts: Sequence[str], batch: int = 64) -> Answers:
    runner.representations = True
    labels, confidence, rows = [], [], []
    for start in range(0, len(texts), batch):
        body = RequestBody(list(texts[start : start + batch]), {}, is_json=True)
        [outcome] = runner.run([runner.parse(body)]).outcomes
        for result in outcome.results:
            scores = np.asarray(result.scores)
            labels.append(int(scores.argmax()))
            confidence.append(float(scores.max()))
            rows.append(np.asarray(result.representation, dtype=np.float32))
    return Answers(np.array(labels), np.array(confidence), np.stack(rows))


def fed(window: DriftWindow, answers: Answers, at: int) -> Any:
    return window.add(int(answers.labels[at]), float(answers.confidence[at]), answers.representations[at])


def window_reading(answers: Answers, labels: int, reference: ReferenceSample, settings: Any, seed: int) -> Any:
    window = DriftWindow(len(answers.labels), labels, True)
    done = None
    for at in range(len(answers.labels)):
        done = fed(window, answers, at)
    return window_tests(done, reference, settings.drift_level, settings.drift_permutations, seed)


def study_folder(folder: Path, data: Path, windows: int, streams: int, say: Callable[[str], None]) -> dict[str, Any]:
    runner = folder_runner(folder)
    settings = runner.settings.monitoring
    labels = len(runner.labels)
    reference = reference_sample(settings.reference, tuple(runner.labels), folder, runner.config.hidden_size)
    size = settings.drift_window
    answers = {}
    for domain in ("movies", *FOREIGN):
        texts = [e.text for e in load_examples(data / domain / "test.csv", "single_label")]
        say(f"  {folder.name}: answering {len(texts)} {domain} test texts ...")
        answers[domain] = answers_of(runner, texts)
    rng = np.random.default_rng(0)

    def draw(domain: str, count: int) -> Answers:
        return answers[domain].take(rng.choice(len(answers[domain].labels), count, replace=False))

    readings = [window_reading(draw("movies", size), labels, reference, settings, seed) for seed in range(windows)]
    false_alarms = {
        "windows": windows,
        "level": settings.drift_level,
        "any_test": float(np.mean([r.rejected() for r in readings])),
        "inputs_test": float(np.mean([r.input_p <= r.level_per_test for r in readings])),
        "label_test": float(np.mean([r.label_p <= r.level_per_test for r in readings])),
        "confidence_test": float(np.mean([r.confidence_p <= r.level_per_test for r in readings])),
        "old_rule_of_thumb": float(np.mean([max(r.label_psi, r.confidence_psi) > OLD_PSI
                                            or max(r.label_js, r.confidence_js) > OLD_JS for r in readings])),
    }  # fmt: skip
    say(f"  false alarms over {windows} in-domain windows: {false_alarms}")
    power: dict[str, dict[str, float]] = {}
    for domain in FOREIGN:
        power[domain] = {}
        for share in MIXES:
            foreign = int(round(size * share))
            found = []
            for seed in range(max(windows // 4, 10)):  # 50 mixed windows at 200 in-domain ones
                parts = [draw(domain, foreign), draw("movies", size - foreign)]
                mixed = Answers(*(np.concatenate([getattr(p, f) for p in parts])
                                  for f in ("labels", "confidence", "representations")))  # fmt: skip
                reading = window_reading(mixed, labels, reference, settings, seed)
                level = reading.level_per_test
                found.append((reading.rejected(), reading.input_p <= level,
                              reading.label_p <= level or reading.confidence_p <= level,
                              max(reading.label_psi, reading.confidence_psi) > OLD_PSI
                              or max(reading.label_js, reading.confidence_js) > OLD_JS))  # fmt: skip
            rates = np.mean(np.array(found, dtype=float), axis=0)
            power[domain][f"{share:g}"] = dict(zip(("any_test", "inputs_test", "output_tests", "old_rule_of_thumb"),
                                                   (float(rate) for rate in rates)))  # fmt: skip
        say(f"  power against {domain} mixes: {power[domain]}")
    detection: dict[str, dict[str, Any]] = {}
    for domain in FOREIGN:
        delays, clears = [], []
        for _ in range(streams):
            before, after = int(rng.integers(2 * size, 4 * size)), 5 * size
            stream = [draw("movies", before), draw(domain, 3 * size), draw("movies", after)]
            window = DriftWindow(size, labels, True)
            alarm = AlarmState(settings.drift_clear_windows)
            raised_at = cleared_at = None
            position = 0
            for part, answers_part in enumerate(stream):
                for at in range(len(answers_part.labels)):
                    done = fed(window, answers_part, at)
                    position += 1
                    if done is None:
                        continue
                    reading = window_tests(done, reference, settings.drift_level, settings.drift_permutations, position)
                    changed = alarm.update(reading.rejected())
                    if changed and alarm.raised and part >= 1 and raised_at is None:
                        raised_at = position - before
                    if changed and not alarm.raised and part == 2 and raised_at is not None and cleared_at is None:
                        cleared_at = position - before - 3 * size
            delays.append(raised_at)
            clears.append(cleared_at)
        detected = [d for d in delays if d is not None]
        detection[domain] = {
            "streams": streams,
            "detected": len(detected),
            "median_answers_to_alarm": float(np.median(detected)) if detected else None,
            "max_answers_to_alarm": max(detected) if detected else None,
            "median_answers_to_clear": float(np.median([c for c in clears if c is not None])) if any(
                c is not None for c in clears) else None,  # fmt: skip
        }
        say(f"  {domain} streams: {detection[domain]}")
    return {"folder": folder.name, "window": size, "level": settings.drift_level,
            "permutations": settings.drift_permutations, "clear_windows": settings.drift_clear_windows,
            "reference_examples": reference.examples,
            "reference_inputs": None if reference.representations is None else len(reference.representations),
            "false_alarms": false_alarms, "power": power, "detection": detection}  # fmt: skip
