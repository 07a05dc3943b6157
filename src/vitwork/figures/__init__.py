"""The pipeline's figures: one module per figure, each with `table(...) -> rows`, `plot(rows) -> Figure` and `make(...)`.

Shared style, colours and the atomic PNG + PDF + CSV writer live in `vitwork.figures.style`; what the analysis
figures share (runs paired with their analysis tables, run-identity columns, typed cells, labels, the panel
grid) in `vitwork.figures.analysis_tables`.
"""
