"""speakerops.eval: embeddings and scores in, verification figures out.

- ``trials``: pinned trial sets (with their sha256 check) and the score/label check.
- ``metrics``: EER, minDCF, actDCF, Cllr, minCllr (the one place their definitions live).
- ``fairness``: Gini, GARBE, FDR; ``bias``: the per-group engine (tables, and figures on the
  row indices of a bootstrap resample).
- ``bootstrap``: speaker resamples and percentile intervals.
- ``calibration``: scores -> LLRs; ``scoring``: cosine, AS-norm, the one cohort builder, the
  packaged scorer.
- ``assess``: the figures and intervals a gate decides on, for one or two systems.
- ``embed``, ``baseline``, ``plots``; ``evaluate``: the stage (reads inputs, writes outputs,
  logs to MLflow).

Imports: models, data and core only.
"""
