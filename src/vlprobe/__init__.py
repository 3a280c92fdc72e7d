"""vlprobe: probe what pre-trained vision-and-language transformers learn (VALUE tasks)."""

__version__ = "0.1.0"
