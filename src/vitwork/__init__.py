"""vitwork: a Snakemake pipeline reproducing "How Do Vision Transformers Work?" (Park & Kim, ICLR 2022)."""

__version__ = "0.1.0"
