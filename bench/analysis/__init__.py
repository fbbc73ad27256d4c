"""Numbers only, from cycles.parquet: learning curves, paired tests, the penalty matrix, results across settings, the
four-word verdicts and the sequential design. No text and no drawing."""
