"""Reporting: turn distillation records into the paper's tables.

Reads the flat JSON records that runs write, aggregates them per table cell,
and renders Markdown and CSV beside the paper's numbers. Nothing here trains
or imports torch, so reports can be rebuilt anywhere from records alone.
"""

from dfkd.report.records import RECORD_FIELDS, RecordWarning, load_records
from dfkd.report.tables import (
    evaluate_claims,
    fidelity,
    render_markdown,
    summarize,
    write_table,
)

__all__ = [
    "RECORD_FIELDS",
    "RecordWarning",
    "evaluate_claims",
    "fidelity",
    "load_records",
    "render_markdown",
    "summarize",
    "write_table",
]
