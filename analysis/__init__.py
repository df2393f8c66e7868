"""Plots, tables and reports of sweeps, read back from MLflow.

- :mod:`analysis.load`: MLflow -> sweeps (with their scientific and nuisance settings), a
  DataFrame of trials and one of metric histories;
- :mod:`analysis.groups`: the best completed trial per scientific value (per seed);
- :mod:`analysis.tables`: one row per scientific value, paper-style tables (Markdown, HTML, CSV);
- :mod:`analysis.references`: the sources' reported numbers, one YAML file per study;
- :mod:`analysis.compare`: ours beside the sources, a deviation in % per cell;
- :mod:`analysis.plots`: metric vs rank with each model's source curves, learning curves with
  ASHA's stops and rungs, importances;
- :mod:`analysis.importance`: Optuna importances and best trials on the edge of the search space;
- :mod:`analysis.report`: the HTML report and its command line, ``python -m analysis.report``.
"""
