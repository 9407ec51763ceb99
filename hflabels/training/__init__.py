"""Fine-tuning a labelled model into a folder ``hflabels archive`` takes as is.

- ``data``: labelled examples from CSV/JSONL, checked, split and resampled;
- ``losses``: class-weighted and focal losses;
- ``metrics``: the task metrics and per-label threshold tuning;
- ``calibration``: temperature and prior correction fitted on held-out logits, and their metrics;
- ``trainer``: the recipe (transformers' Trainer, evaluated every epoch, best epoch kept);
- ``evaluation``: scoring a split as the model will be served.
"""
