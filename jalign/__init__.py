"""jalign: a JAX-native alignment stack for language models."""

__version__ = "0.1.0"
