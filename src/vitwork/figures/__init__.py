"""The pipeline's figures: one module per figure, each with `table(...) -> rows`, `plot(rows) -> Figure` and `make(...)`.

Shared style, colours and the atomic PNG + PDF + CSV writer live in `vitwork.figures.style`.
"""
