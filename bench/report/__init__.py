"""A report from the analysis: the verdict sentences, tables, figures, report.md, and suites over several folders."""
