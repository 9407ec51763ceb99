"""Fine-tuning a labelled model into a folder ``hflabels archive`` takes as is.

- ``data``: labelled examples from CSV/JSONL, checked, split, subsampled and resampled;
- ``choices``: what the command line offers (weight schemes, coverage levels), without numpy;
- ``options``: ``TrainOptions`` and the checks of a run that cannot work;
- ``losses``: class-weighted and focal losses;
- ``metrics``: the task metrics and per-label threshold tuning;
- ``calibration``: temperature and prior correction fitted on held-out logits, and their metrics;
- ``guarantees``: conformal thresholds, abstention and the drift reference;
- ``hf_trainer``: transformers' Trainer as the recipe runs it;
- ``trainer``: ``train()``, the recipe in named steps;
- ``model_folder``: the folder a run writes;
- ``evaluation``: scoring a split as the model will be served;
- ``synthetic``: externally generated examples, deduplicated and filtered.
"""
