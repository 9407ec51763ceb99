"""Real, human-labelled sentiment data, offline: the four corpora of Hutto & Gilbert (ICWSM 2014).

The source distribution of ``vaderSentiment==3.3.2`` (MIT licence) carries
``additional_resources/hutto_ICWSM_2014.tar.gz``: movie-review snippets, Amazon review snippets,
New York Times editorial snippets and tweets, each sentence rated -4..+4 by 20 people, the files
holding the mean rating (``*_GroundTruth.txt``: id, mean, text, tab-separated). It is fetched with
pip only (``pip download --no-deps --no-binary :all:``), both archives checked against the sha256
recorded here, and nothing of it is committed to this repository.

Labels follow the paper's 3-class rule on the normalised rating: rating / 4 > 0.05 is positive,
< -0.05 negative, otherwise neutral. Splits are seeded and stratified by that label, so the
classification and regression files of one domain hold the same sentences.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import subprocess
import sys
import tarfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hflabels.training.data import DataError

VADER_VERSION = "3.3.2"
SDIST_NAME = f"vaderSentiment-{VADER_VERSION}.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_ARCHIVE = f"vaderSentiment-{VADER_VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz"
INNER_SHA256 = "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa"
DOMAINS = {
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
}
LABELS = ("negative", "neutral", "positive")
# The paper's rule, on the rating normalised to -1..1.
NEUTRAL_BAND = 0.05
SPLITS = {"train": 0.7, "validation": 0.1, "test": 0.2}
CITATION = (
    "C.J. Hutto and E.E. Gilbert. VADER: A Parsimonious Rule-based Model for Sentiment Analysis of "
    "Social Media Text. Eighth International Conference on Weblogs and Social Media (ICWSM-14), 2014."
)


@dataclass(frozen=True)
class RatedSentence:
    domain: str
    sentence_id: str
    rating: float  # the mean of 20 ratings, -4..+4
    text: str

    @property
    def label(self) -> str:
        return label_of(self.rating)


def label_of(rating: float) -> str:
    normalised = rating / 4.0
    if normalised > NEUTRAL_BAND:
        return "positive"
    if normalised < -NEUTRAL_BAND:
        return "negative"
    return "neutral"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(cache: Path) -> Path:
    """The vaderSentiment source distribution in ``cache``, downloaded with pip if absent, checked."""
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / SDIST_NAME
    if not sdist.exists():
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                   f"vaderSentiment=={VADER_VERSION}", "-d", str(cache)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not sdist.exists():
            raise DataError(f"pip could not download vaderSentiment=={VADER_VERSION}: {result.stderr.strip()[-400:]}")
    found = sha256_of(sdist)
    if found != SDIST_SHA256:
        raise DataError(f"{sdist}: sha256 {found} is not the recorded {SDIST_SHA256}; delete it and fetch again")
    return sdist


def read_corpora(sdist: Path, domains: Sequence[str]) -> dict[str, list[RatedSentence]]:
    """The rated sentences of each domain, from the (checked) inner archive of ``sdist``."""
    with tarfile.open(sdist, "r:gz") as outer:
        member = outer.extractfile(INNER_ARCHIVE)
        if member is None:
            raise DataError(f"{sdist}: no {INNER_ARCHIVE}")
        inner_bytes = member.read()
    found = hashlib.sha256(inner_bytes).hexdigest()
    if found != INNER_SHA256:
        raise DataError(f"{INNER_ARCHIVE}: sha256 {found} is not the recorded {INNER_SHA256}")
    corpora: dict[str, list[RatedSentence]] = {}
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        for domain in domains:
            member = inner.extractfile(f"hutto_ICWSM_2014/{DOMAINS[domain]}")
            if member is None:
                raise DataError(f"{INNER_ARCHIVE}: no {DOMAINS[domain]}")
            corpora[domain] = parse_ground_truth(domain, member.read().decode("utf-8"))
    return corpora


def parse_ground_truth(domain: str, text: str) -> list[RatedSentence]:
    sentences = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise DataError(f"{DOMAINS[domain]}:{number}: expected id, rating and text separated by tabs")
        sentence_id, rating, sentence = parts
        sentences.append(RatedSentence(domain, sentence_id.strip(), float(rating), sentence.strip()))
    return sentences


def stratified_splits(
    sentences: Sequence[RatedSentence], seed: int, fractions: dict[str, float] = SPLITS
) -> dict[str, list[RatedSentence]]:
    """Seeded splits with each label's share kept in every split (rounding the smallest last)."""
    by_label: dict[str, list[RatedSentence]] = defaultdict(list)
    for sentence in sentences:
        by_label[sentence.label].append(sentence)
    rng = random.Random(seed)
    splits: dict[str, list[RatedSentence]] = {name: [] for name in fractions}
    names = list(fractions)
    for label in sorted(by_label):
        members = sorted(by_label[label], key=lambda s: s.sentence_id)
        rng.shuffle(members)
        start = 0
        for position, name in enumerate(names):
            end = len(members) if position == len(names) - 1 else start + round(fractions[name] * len(members))
            splits[name].extend(members[start:end])
            start = end
    for name in names:
        rng.shuffle(splits[name])
    return splits


def write_split(path: Path, sentences: Sequence[RatedSentence], target: str) -> None:
    """``text,label`` (classification) or ``text,score`` (regression: the mean rating)."""
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["text", target])
        for sentence in sentences:
            writer.writerow([sentence.text, sentence.label if target == "label" else f"{sentence.rating:.6g}"])


def write_dataset(output: Path, corpora: dict[str, list[RatedSentence]], seed: int) -> dict[str, dict[str, Counter]]:
    """``output/DOMAIN/{train,validation,test}.csv`` and ``output/DOMAIN/regression/*.csv``; the
    label counts per domain and split."""
    counts: dict[str, dict[str, Counter]] = {}
    for domain, sentences in corpora.items():
        splits = stratified_splits(sentences, seed)
        (output / domain / "regression").mkdir(parents=True, exist_ok=True)
        counts[domain] = {}
        for name, members in splits.items():
            write_split(output / domain / f"{name}.csv", members, "label")
            write_split(output / domain / "regression" / f"{name}.csv", members, "score")
            counts[domain][name] = Counter(sentence.label for sentence in members)
    (output / "SOURCE.txt").write_text(
        f"vaderSentiment=={VADER_VERSION} source distribution (MIT licence), {INNER_ARCHIVE}\n"
        f"sha256 {INNER_SHA256}\n{CITATION}\n"
        f"labels: rating/4 > {NEUTRAL_BAND} positive, < -{NEUTRAL_BAND} negative, else neutral; seed {seed}\n",
        encoding="utf-8",
    )
    return counts
