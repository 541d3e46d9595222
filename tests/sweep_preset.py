"""The `hparams_search` preset text the sweep tests write into their conf/ copy: one study of
two workers on the micro corpus (augmentation off, quiet trainer), its search space given."""

from __future__ import annotations


def search_preset(study: str, max_epochs: int, n_trials: int, space: str) -> str:
    """A `conf/hparams_search/<study>.yaml`; ``space`` is the YAML of `sweep.params` and
    `sweep.enqueue`, indented under `sweep:`."""
    return f"""\
# @package _global_
defaults:
  - override /augment: none
trainer:
  max_epochs: {max_epochs}
  enable_progress_bar: false
  enable_model_summary: false
sweep:
  study_name: {study}
  storage: null
  metric: val_eer
  direction: minimize
  n_trials: {n_trials}
  n_jobs: 2
  timeout: null
  out_dir: ${{paths.artifacts_dir}}/sweeps/${{sweep.study_name}}
  sampler: {{type: tpe, seed: 0, tpe: {{n_startup_trials: 10}}}}
  pruner: {{type: median, median: {{n_startup_trials: 1, n_warmup_steps: 0}}}}
{space}"""
