"""speakerops.models: front end, backbones (the zoo), the encoder and its file format.

Modules
    features.py      the front ends (`FeatureConfig`, `Fbank`): log Mel fbank, GE2E's mel power
                     spectrogram, SpeechBrain's Fbank
    windowing.py     windowed inference (a model config's `window:`): mean of window embeddings
    zoo.py           the registry of backbone classes: `@register_backbone`, `build_backbone`
    ecapa.py, campplus.py, edge.py, resnet.py, tdnn.py   the backbones; ge2e.py (resemblyzer's
                     GE2E) and ecapa_sb.py (SpeechBrain's ECAPA-TDNN) for imported encoders
    losses.py        the AAM-softmax training head
    encoder.py       `SpeakerEncoder`: fbank + backbone + `extras`; refuses non-finite output
    encoder_file.py  the file format: safetensors weights + JSON metadata, sha256-checked
    importers/       `speakerops models import`: resemblyzer's GE2E, SpeechBrain ECAPA folders
    legacy.py        the only torch-pickle reader (`weights_only=True`): Lightning checkpoints
                     and `speakerops models convert` for old `encoder.pt` files

Add a model to the zoo (one file, one config, no list to edit):

1. `src/models/mynet.py`: a `torch.nn.Module` taking features `[B, T, n_mels]` and returning
   embeddings `[B, embedding_dim]`, with an `embedding_dim` attribute, registered by name::

       import torch
       from torch import nn

       from speakerops.models.zoo import register_backbone


       @register_backbone("mynet")
       class MyNet(nn.Module):
           def __init__(self, n_mels: int = 80, embedding_dim: int = 192) -> None:
               super().__init__()
               self.embedding_dim = embedding_dim
               self.proj = nn.Linear(2 * n_mels, embedding_dim)

           def forward(self, feats):
               return self.proj(torch.cat([feats.mean(1), feats.std(1)], dim=-1))

   Every module in this package is discovered on the first look-up, so the decorator is all
   the registration there is.
2. `conf/model/mynet.yaml`: the name and the constructor's keyword arguments::

       arch: mynet
       n_mels: ${features.n_mels}
       embedding_dim: 192

3. Train it: `speakerops train model=mynet`. The encoder file records `arch: mynet` and the
   arguments; loading builds the class from the registry (never from an import path in a file).
   Add the name to `ZOO` in `tests/test_zoo.py` with its embedding size and parameter bounds, so
   the zoo tests (build, variable lengths, gradients, one training step) cover it.
"""
