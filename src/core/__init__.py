"""The base layer: paths, names, JSON/sha256 helpers, config composition, MLflow client setup,
lineage, process environment, keys, the policy and model-URI parsers. It imports no stage
(`speakerops.data`, `.models`, ...); every stage may import it."""
