"""Reference answers from transformers 4.x's own pipelines, where transformers 5 removed or changed
them (the question-answering pipeline; text classification's ``return_all_scores``).

This file runs in a venv of its own with transformers 4.x (``make qa-oracle`` builds
``.venv-qa-oracle``), never in the project's venv:

    .venv-qa-oracle/bin/python tests/pipeline_oracle.py JOB.json ANSWERS.json

JOB.json: ``{"task": "question-answering" | "text-classification", "model_dir": "...", "cases": [...]}``
where a question-answering case is ``{"question", "context", "parameters"}`` and a
text-classification case ``{"inputs", "parameters"}``; ANSWERS.json holds the pipeline's return
value for each case, in order.
"""

from __future__ import annotations

import json
import sys


def fast_tokenizer(model_dir: str):
    """The folder's tokenizer.json as 4.x's fast tokenizer: transformers 5 names its class
    ``TokenizersBackend`` in tokenizer_config.json, which 4.x cannot resolve; the special tokens,
    length limit and padding side come from that config, the tokenizing from tokenizer.json."""
    from pathlib import Path

    from transformers import PreTrainedTokenizerFast

    config = json.loads((Path(model_dir) / "tokenizer_config.json").read_text(encoding="utf-8"))
    keep = ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token", "bos_token", "eos_token",
            "model_max_length", "padding_side", "model_input_names")  # fmt: skip
    return PreTrainedTokenizerFast(
        tokenizer_file=str(Path(model_dir) / "tokenizer.json"), **{key: config[key] for key in keep if key in config}
    )


def main(job_path: str, answers_path: str) -> int:
    import transformers
    from transformers import pipeline

    assert transformers.__version__.startswith("4."), (
        f"the oracle needs transformers 4.x, not {transformers.__version__}"
    )
    with open(job_path, encoding="utf-8") as job_file:
        job = json.load(job_file)
    tokenizer = fast_tokenizer(job["model_dir"])
    reference = pipeline(job["task"], model=job["model_dir"], tokenizer=tokenizer, device=-1)
    if job.get("id2label"):  # the names a mapping file gives, where the config has none
        reference.model.config.id2label = {int(i): name for i, name in job["id2label"].items()}
    answers = []
    for case in job["cases"]:
        if job["task"] == "question-answering":
            answers.append(reference(question=case["question"], context=case["context"], **case["parameters"]))
        else:
            answers.append(reference(case["inputs"], **case["parameters"]))
    with open(answers_path, "w", encoding="utf-8") as answers_file:
        json.dump({"transformers": transformers.__version__, "answers": answers}, answers_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
