"""The base layer: paths, names, JSON/hash helpers, config, MLflow setup, lineage, the policy
and model-URI parsers. It imports no stage."""
