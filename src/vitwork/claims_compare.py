"""Two studies' claims side by side: which verdicts agree, which differ, which one study could not test.

    python -m vitwork.claims_compare demo=results/demo/claims.csv mini=results/cifar100-mini/claims.csv

prints a Markdown table with one row per statement of either study (matched by claim number and statement text,
in the order of the first study, then the second's own rows), each study's verdict with its two values, and a
last column marking the rows whose verdicts differ. The README's side-by-side table is its output.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Mapping, Sequence

from vitwork.claims import fmt, read_columns


COLUMNS = ("claim", "statement", "verdict", "a_mean", "b_mean")  # what the comparison reads of a claims.csv


def read_claims(path: str | os.PathLike) -> list[dict[str, str]]:
    return read_columns(path, "claims", COLUMNS)


def _cell(row: dict[str, str] | None) -> str:
    """A study's verdict with its values: `holds (1.2 vs 49.6)`; a statement it does not have: `—`."""
    if row is None:
        return "—"
    values = [fmt(float(row[key])) for key in ("a_mean", "b_mean") if row.get(key)]
    return f"{row['verdict']} ({' vs '.join(values)})" if values else row["verdict"]


def compare(studies: Mapping[str, Sequence[dict[str, str]]]) -> list[dict[str, str]]:
    """One row per statement of any study: claim, statement, each study's cell and whether the verdicts differ
    (a statement missing from a study, or `not run` there, does not count as a difference)."""
    keyed = {name: {(row["claim"], row["statement"]): row for row in rows} for name, rows in studies.items()}
    order = list(dict.fromkeys(key for rows in keyed.values() for key in rows))
    table = []
    for key in order:
        verdicts = {rows[key]["verdict"] for rows in keyed.values() if key in rows} - {"not run"}
        table.append({"claim": key[0], "statement": key[1],
                      **{name: _cell(rows.get(key)) for name, rows in keyed.items()},
                      "differs": "yes" if len(verdicts) > 1 else ""})
    return table


def markdown(table: list[dict[str, str]], names: Sequence[str]) -> str:
    header = ["claim", "statement", *names, "differs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[column] for column in header) + " |" for row in table]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", metavar="NAME=CLAIMS.CSV", help="two or more studies' claims.csv")
    args = parser.parse_args(argv)
    studies = {}
    for item in args.studies:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"{item!r}: expected NAME=path/to/claims.csv")
        try:
            studies[name] = read_claims(path)
        except (OSError, ValueError) as error:
            parser.error(str(error))
    sys.stdout.write(markdown(compare(studies), list(studies)))


if __name__ == "__main__":
    main()
