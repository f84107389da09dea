"""The Markdown report of a set of runs (scripts/aggregate.py, scripts/reproduce/run_table.py):
search runs and evaluation runs in tables of their own, per space, never mixed.

    ## NAS-Bench-201 space: (a) the benchmark table, (b) partial channels, (c) anchor ablation
       (searches), (d) cells trained from scratch (evaluations)
    ## DARTS space: (e) searches and their cost, (f) architectures trained from scratch

Each table appears only when there are runs for it (scripts/reports/search_tables.py, scripts/reports/eval_tables.py).
"""
from reports.eval_tables import evaluation_table
from reports.search_tables import anchor_table, darts_search_table, nb201_table, partial_channel_table
from reports.table_format import section

SECTIONS = (
    ("NAS-Bench-201 space", (nb201_table, partial_channel_table, anchor_table, lambda runs: evaluation_table(runs, "201"))),
    ("DARTS space", (darts_search_table, lambda runs: evaluation_table(runs, "darts"))),
)


def render_markdown(runs):
    """The report, or "" when no table has runs."""
    parts = []
    for heading, tables in SECTIONS:
        found = [table for table in (make(runs) for make in tables) if table]
        if found:
            parts.append(f"## {heading}\n\n" + "\n\n".join(section(*table) for table in found))
    return "\n\n".join(parts) + "\n" if parts else ""
