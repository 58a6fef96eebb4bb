"""routelora: continual learning for vision-language models by routing between LoRA experts."""

__version__ = "0.1.0"
