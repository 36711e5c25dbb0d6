"""Renders a loaded report in the format asked for: a table, JSON, CSV or an HTML page; or its
refund claims as a table, JSON or CSV."""

from __future__ import annotations

import json
from pathlib import Path

from batchbanana.report.claims import CLAIM_FORMATS, claims_csv, claims_json, claims_table
from batchbanana.report.html import render_html
from batchbanana.report.loading import LoadedReport
from batchbanana.report.table import as_table
from batchbanana.report.text import as_csv, as_json

FORMATS = ("table", "json", "csv", "html")


def render(loaded: LoadedReport, output_format: str, output_path: Path | None) -> str:
    """The whole report as text in one of FORMATS (html links images relative to output_path)."""
    if output_format == "json":
        return json.dumps(as_json(loaded), indent=2, ensure_ascii=False) + "\n"
    if output_format == "csv":
        return as_csv(loaded)
    if output_format == "html":
        return render_html(loaded, output_path)
    if output_format == "table":
        return as_table(loaded)
    raise ValueError(f"unknown report format {output_format!r}; choose one of {FORMATS}")


def render_claims(loaded: LoadedReport, output_format: str) -> str:
    """The refund claims as text in one of CLAIM_FORMATS."""
    if output_format == "json":
        return json.dumps(claims_json(loaded), indent=2, ensure_ascii=False) + "\n"
    if output_format == "csv":
        return claims_csv(loaded)
    if output_format == "table":
        return claims_table(loaded)
    raise ValueError(f"unknown claims format {output_format!r}; choose one of {CLAIM_FORMATS}")
