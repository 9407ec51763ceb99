"""Label names for class indices: ``index_to_name.json`` checked against the model, or ``id2label``.

Accepted mapping files:
- ``{"0": "negative", "1": "positive"}``; a list value (TorchServe's ``["id", "name"]``) uses its
  last element;
- ``{"label_list": ["O", "B-PER"]}`` or TorchServe's string form ``{"label_list": "[O, B-PER]"}``,
  parsed by a small tokenizer (items quoted or not), never evaluated.
The mapping must name exactly the indices ``0..num_labels-1``, each with a distinct, non-empty name.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from handler.api.errors import ConfigurationError

MAPPING_FILE_NAME = "index_to_name.json"
_DEFAULT_LABEL = re.compile(r"LABEL_(\d+)")
# Other names for the same outputs: index_to_name.<set>.json (index_to_name.de.json, ...).
LABEL_SET_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_LABEL_SET_FILE = re.compile(r"index_to_name\.([a-z][a-z0-9_-]{0,31})\.json")


def label_set_file_name(label_set: str) -> str:
    if not LABEL_SET_NAME.fullmatch(label_set):
        raise ConfigurationError(
            f"label set name {label_set!r}: use lower-case letters, digits, '_' and '-', starting with a letter"
        )
    return f"index_to_name.{label_set}.json"


def label_set_files(folder: Path) -> dict[str, Path]:
    """The label-set files beside a model's main mapping, by set name."""
    found = {}
    for path in sorted(folder.glob("index_to_name.*.json")):
        match = _LABEL_SET_FILE.fullmatch(path.name)
        if match:
            found[match.group(1)] = path
    return found


def check_label_set(main: tuple[str, ...], other: tuple[str, ...], source: str) -> None:
    """Another name for every output of the main set: as many labels, and (for BIO tags) the same
    B-/I-/O structure, so entity grouping works the same under every set."""
    check_label_count(other, len(main), source)
    for index, (ours, theirs) in enumerate(zip(main, other)):
        if _bio_role(ours) != _bio_role(theirs):
            raise ConfigurationError(
                f"{source}: index {index} is {theirs!r} but the main label is {ours!r}; "
                "a label set renames entity types and keeps their B-/I-/O prefixes"
            )


def _bio_role(label: str) -> str:
    if label == "O":
        return "O"
    return label[:2] if label[:2] in ("B-", "I-") else ""


def load_label_sets(paths: Mapping[str, Path], main: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Each set's labels in index order, checked against the main ones."""
    sets = {}
    for name, path in sorted(paths.items()):
        labels = parse_label_mapping(path.read_text(encoding="utf-8"), path.name)
        check_label_set(main, labels, path.name)
        sets[name] = labels
    return sets


def parse_label_mapping(text: str, source: str = MAPPING_FILE_NAME) -> tuple[str, ...]:
    """Labels in index order from a mapping file's text; raises ConfigurationError naming ``source``."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{source}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"{source}: must be a JSON object, got {type(document).__name__}")
    if not document:
        raise ConfigurationError(f"{source}: the mapping is empty")
    if "label_list" in document:
        if len(document) != 1:
            raise ConfigurationError(f"{source}: label_list must be the only key")
        labels = _label_list(document["label_list"], source)
    else:
        labels = _indexed_labels(document, source)
    _check_names(labels, source)
    return labels


def _indexed_labels(document: Mapping[str, Any], source: str) -> tuple[str, ...]:
    by_index: dict[int, str] = {}
    for key, value in document.items():
        if not re.fullmatch(r"0|[1-9][0-9]*", key.strip()):
            raise ConfigurationError(f'{source}: key {key!r} is not a class index (use "0", "1", ...)')
        by_index[int(key)] = _label_name(value, key, source)
    missing = sorted(set(range(len(by_index))) - set(by_index))
    if missing:
        extra = sorted(i for i in by_index if i >= len(by_index))
        raise ConfigurationError(
            f"{source}: indices must be 0..{len(by_index) - 1} without gaps; "
            f"missing {missing[:10]}, unexpected {extra[:10]}"
        )
    return tuple(by_index[i] for i in range(len(by_index)))


def _label_name(value: Any, key: str, source: str) -> str:
    # TorchServe's image examples map an index to ["synset id", "name"]; the name comes last.
    if isinstance(value, list) and value:
        value = value[-1]
    if not isinstance(value, str):
        raise ConfigurationError(f"{source}: the label for index {key} must be a string, got {value!r}")
    return value


def _label_list(value: Any, source: str) -> tuple[str, ...]:
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise ConfigurationError(f"{source}: label_list must hold only strings")
        return tuple(value)
    if isinstance(value, str):
        try:
            return tuple(parse_label_list_string(value))
        except ValueError as error:
            raise ConfigurationError(f"{source}: label_list is malformed: {error}") from None
    raise ConfigurationError(f'{source}: label_list must be a list or a string like "[O, B-PER]"')


def parse_label_list_string(text: str) -> list[str]:
    """``"[O, 'B-PER', \"I-PER\"]"`` -> ``["O", "B-PER", "I-PER"]``.

    An item is bare (surrounding spaces dropped, quotes inside it literal) or quoted from its first
    character (commas inside kept); only spaces may follow a closing quote.
    """
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError("expected a bracketed list like [O, B-PER, I-PER]")
    inner = text[1:-1]
    if not inner.strip():
        raise ValueError("the list is empty")
    items: list[str] = []
    current: list[str] = []
    state = "leading"  # leading -> bare | quoted -> closed
    quote = ""
    for char in inner + ",":
        if state == "quoted":
            if char == quote:
                state = "closed"
            else:
                current.append(char)
        elif char == ",":
            item = "".join(current) if state == "closed" else "".join(current).strip()
            if not item:
                raise ValueError(f"item {len(items)} is empty")
            items.append(item)
            current, state = [], "leading"
        elif state == "leading":
            if char in "'\"":
                quote, state = char, "quoted"
            elif not char.isspace():
                current.append(char)
                state = "bare"
        elif state == "bare":
            current.append(char)
        elif not char.isspace():  # closed
            raise ValueError(f"text after the closing quote of item {len(items)}")
    if state == "quoted":
        raise ValueError("unbalanced quote")
    return items


def _check_names(labels: tuple[str, ...], source: str) -> None:
    for index, name in enumerate(labels):
        if not name.strip():
            raise ConfigurationError(f"{source}: the label for index {index} is empty")
    seen: dict[str, int] = {}
    for index, name in enumerate(labels):
        if name in seen:
            raise ConfigurationError(f"{source}: duplicate label {name!r} at indices {seen[name]} and {index}")
        seen[name] = index


def check_label_count(labels: tuple[str, ...], num_labels: int, source: str = MAPPING_FILE_NAME) -> None:
    if len(labels) != num_labels:
        raise ConfigurationError(f"{source}: has {len(labels)} labels but the model has num_labels={num_labels}")


def is_default_name(name: str, index: int) -> bool:
    match = _DEFAULT_LABEL.fullmatch(name)
    return match is not None and int(match.group(1)) == index


def labels_from_id2label(id2label: Mapping[Any, str], num_labels: int) -> tuple[str, ...]:
    normalized = {int(index): name for index, name in id2label.items()}
    return tuple(normalized.get(i, f"LABEL_{i}") for i in range(num_labels))


def resolve_labels(
    mapping_path: Path | None,
    id2label: Mapping[Any, str] | None,
    num_labels: int,
    logger: logging.Logger,
) -> tuple[str, ...]:
    """The mapping file if present (checked against ``num_labels``), else the config's ``id2label``."""
    config_labels = labels_from_id2label(id2label or {}, num_labels)
    if mapping_path is None or not mapping_path.exists():
        if all(is_default_name(name, i) for i, name in enumerate(config_labels)):
            logger.warning(
                "no %s and the model config has only default names (LABEL_0...); "
                "responses will use them. Add a mapping with --mapping to serve real names.",
                MAPPING_FILE_NAME,
            )
        _check_names(config_labels, "config.json id2label")
        return config_labels
    labels = parse_label_mapping(mapping_path.read_text(encoding="utf-8"), mapping_path.name)
    check_label_count(labels, num_labels, mapping_path.name)
    disagreements = [
        (i, config_name, name)
        for i, (config_name, name) in enumerate(zip(config_labels, labels))
        if config_name != name and not is_default_name(config_name, i)
    ]
    if disagreements:
        logger.warning(
            "%s and config.json id2label disagree; the mapping wins: %s",
            mapping_path.name,
            ", ".join(f"{i}: mapping {name!r} vs id2label {config_name!r}" for i, config_name, name in disagreements),
        )
    return labels
