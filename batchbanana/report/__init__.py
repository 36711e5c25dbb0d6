"""The reports: aggregation over ledgers, the estimate before a run, and the renderers (table, JSON,
CSV, HTML) over one formatting module."""
