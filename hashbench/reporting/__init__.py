"""The report side: tables, figures, the HTML page, significance tests, reference rows and the
paper's numbers, all read from run records."""
