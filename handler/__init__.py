"""TorchServe handler for Hugging Face transformers models that answers with label names.

The package travels inside every model archive (``scripts/archive.py`` copies it as a folder),
so its modules import each other absolutely as ``handler.<module>``.
"""
