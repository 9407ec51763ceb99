"""``hflabels data vader``: the real, human-rated corpora, fetched through pip, checked, split."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from support import script

from hflabels.training.data import DataError
from hflabels.vader_data import DOMAINS, fetch_sdist, label_of, read_corpora, stratified_splits

REPO = Path(__file__).resolve().parents[2]
# Sentences per corpus as the paper (Hutto & Gilbert 2014) and its files have them.
SIZES = {"movies": 10605, "amazon": 3708, "nyt": 5190, "tweets": 4200}


@pytest.fixture(scope="session")
def sdist() -> Path:
    # Kept under build/ across runs: pip downloads it once (2.4 MB), the sha256 is checked each time.
    return fetch_sdist(REPO / "build" / "downloads")


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def test_the_corpora_have_the_papers_sizes_and_label_shares(sdist):
    corpora = read_corpora(sdist, list(DOMAINS))
    assert {domain: len(sentences) for domain, sentences in corpora.items()} == SIZES
    movies = Counter(sentence.label for sentence in corpora["movies"])
    assert movies["neutral"] / SIZES["movies"] == pytest.approx(0.02, abs=0.01)
    assert all(-4.0 <= s.rating <= 4.0 and s.text for sentences in corpora.values() for s in sentences)


def test_the_three_class_rule_is_the_papers():
    # rating / 4 > 0.05 positive, < -0.05 negative, otherwise neutral.
    assert [label_of(r) for r in (0.2, 0.2001, -0.2, -0.2001, 0.0, 3.9)] == [
        "neutral", "positive", "neutral", "negative", "neutral", "positive"
    ]  # fmt: skip


def test_the_command_writes_seeded_stratified_disjoint_splits(sdist, tmp_path, capsys):
    output = tmp_path / "vader"
    argv = ["vader", "--output", str(output), "--domain", "tweets", "--domain", "amazon", "--sdist", str(sdist)]
    assert script("data")(argv) == 0
    assert "tweets: train 2939" in capsys.readouterr().out
    for domain in ("tweets", "amazon"):
        splits = {name: rows(output / domain / f"{name}.csv") for name in ("train", "validation", "test")}
        texts = [row["text"] for split in splits.values() for row in split]
        assert len(texts) == SIZES[domain]
        assert sum(len(split) for split in splits.values()) == SIZES[domain]
        overall = Counter(row["label"] for split in splits.values() for row in split)
        for name, split in splits.items():
            counts = Counter(row["label"] for row in split)
            for label, total in overall.items():
                expected = total * {"train": 0.7, "validation": 0.1, "test": 0.2}[name]
                assert abs(counts[label] - expected) <= 1, (domain, name, label)
        # The regression files hold the same sentences, with the mean rating as the target.
        regression = rows(output / domain / "regression" / "test.csv")
        assert [row["text"] for row in regression] == [row["text"] for row in splits["test"]]
        assert all(label_of(float(r["score"])) == c["label"] for r, c in zip(regression, splits["test"]))
    assert "ICWSM" in (output / "SOURCE.txt").read_text()
    assert not (output / "movies").exists()
    again = tmp_path / "again"
    assert script("data")(["vader", "--output", str(again), "--domain", "tweets", "--sdist", str(sdist)]) == 0
    assert (again / "tweets" / "train.csv").read_bytes() == (output / "tweets" / "train.csv").read_bytes()


def test_other_seeds_give_other_splits_of_the_same_sentences(sdist):
    sentences = read_corpora(sdist, ["amazon"])["amazon"]
    first, second = stratified_splits(sentences, 1), stratified_splits(sentences, 2)
    assert {s.sentence_id for s in first["test"]} != {s.sentence_id for s in second["test"]}
    assert sorted(s.sentence_id for part in first.values() for s in part) == sorted(s.sentence_id for s in sentences)


def test_an_archive_that_is_not_the_recorded_one_is_refused(sdist, tmp_path):
    copy = tmp_path / "cache" / sdist.name
    copy.parent.mkdir()
    shutil.copyfile(sdist, copy)
    with copy.open("r+b") as stream:
        stream.seek(1000)
        stream.write(b"\x00\x01\x02")
    with pytest.raises(DataError, match="sha256 .* is not the recorded"):
        fetch_sdist(copy.parent)


def test_the_models_own_softmax_is_recovered_exactly_from_served_calibrated_scores():
    from handler.postprocess.scoring import LogitCalibration, softmax
    from lab.real_data import uncalibrated

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (50, 3))
    calibration = LogitCalibration(np.array([0.3, -1.2, 0.9]), np.full(3, 0.7))
    served = softmax(calibration.apply(logits))
    np.testing.assert_allclose(uncalibrated(served, 0.7, calibration.adjustment), softmax(logits), atol=1e-9)


def test_vader_baseline_uses_its_readme_thresholds():
    from lab.real_data import vader_compound, vader_labels

    assert vader_labels(np.array([0.05, 0.0499, -0.05, -0.0499])) == ["positive", "neutral", "negative", "neutral"]
    compound = vader_compound(["I love this, it is wonderful!", "This is terrible and I hate it.", "It is a chair."])
    assert vader_labels(compound) == ["positive", "negative", "neutral"]
