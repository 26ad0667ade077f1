"""Thin Prefect tasks: one textclf call each, plus retries, logging and artifacts."""
