"""The rules: pure functions and tables, no I/O. Model limits, the MIME table, prices, outcomes and
billing, backoff, and the Gemini wire format. Imports nothing of the package outside rules/ but the
exception tree (errors.py)."""
