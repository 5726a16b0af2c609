"""AI Stats Gateway: a self-hostable LLM API gateway."""

__version__ = "0.1.0"
