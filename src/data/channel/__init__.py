"""Channel simulation: what happens to speech between the mouth and the file.

One package for the synthetic corpus and for training augmentation (`speakerops.train.augment`
wraps these functions with probabilities and config):

* `room`: impulse responses (real files prepared, image-source shoeboxes, decaying noise
  tails) and level-preserving, time-aligned reverberation;
* `noise`: coloured noise and mixing at an SNR;
* `telephone`: the 300-3400 Hz band at 8 kHz with a codec and packet loss;
* `codec`: G.711 µ-law / A-law, 8-bit linear;
* `level`: power, SNR and the ``torch.Generator`` draws;
* `dsp`: numpy helpers (FFT sizes, ramps, the mel scale);
* `recording`: the synthetic corpus's per-recording channel (presets studio, headset, laptop,
  far field, phone): mic EQ, room, noise and the phone line in float64 numpy.

Augmentation works on float32 torch tensors with a ``torch.Generator``; the corpus generator
on float64 numpy with a ``numpy.random.Generator`` and imports no torch (its worker processes
start fast). The corpus's room, phone band and µ-law (suffix ``_np`` in `recording`) keep
their own float64 forms because every corpus file's bytes are pinned to them; moving the
corpus onto the torch functions is a deliberate corpus change (new hashes, new demo figures).

Nothing is imported here: ``import speakerops.data.channel.recording`` must not load torch.
"""
