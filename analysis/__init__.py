"""Plots, tables and reports of sweeps, read back from MLflow.

- :mod:`analysis.load`: MLflow -> sweeps, a DataFrame of trials and one of metric histories;
- :mod:`analysis.tables`: seed-averaged summaries and paper-style tables (Markdown, HTML, CSV);
- :mod:`analysis.plots`: metric vs rank, learning curves with ASHA's stops and rungs, importances;
- :mod:`analysis.importance`: Optuna importances and best trials on the edge of the search space;
- :mod:`analysis.report`: the HTML report and its command line, ``python -m analysis.report``.
"""
