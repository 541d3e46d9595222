"""speakerops.drift: production drift monitoring (see README.md in this folder).

Light to import on purpose (``speakerops drift --help`` stays instant): Evidently and
MLflow are imported inside the functions that need them.

- ``log``: production embedding log (``append_production_log``, ``read_production_log``)
- ``reference``: reference sample per model version (``save_reference``,
  ``load_reference``, ``load_champion_reference``)
- ``checks``: the decision (``check_drift``)
- ``report``, ``tickets``, ``retrain``, ``run`` (``main``: the ``speakerops drift`` job)
"""
