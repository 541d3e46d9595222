"""The base layer: paths, names, JSON/hash helpers, config, MLflow setup, lineage, keys, the
policy and model-URI parsers. It imports no stage."""
