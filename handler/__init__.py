"""TorchServe handler for Hugging Face transformers models that answers with label names.

The package travels inside every model archive (``hflabels archive`` copies it as a folder with
its subpackages), so its modules import each other absolutely as ``handler.<layer>.<module>``.
"""
