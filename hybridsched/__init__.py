"""Hybrid offline-online scheduling of LLM inference: a simulator-backed workbook."""

__version__ = "0.1.0"
