"""The evaluation report: figures, CSV tables, plots and an HTML page. Qt-free."""
