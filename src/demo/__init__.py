"""The demos (top layer, beside the CLI): `lifecycle` (`speakerops demo`: prepare .. gate
through DVC, with a summary) and `drift` (`speakerops drift-demo`: drift monitoring on the
demo's champion)."""
