"""Embedded synthetic speech corpus: deterministic source-filter speech-like audio.

The default data when a user gives none. Each speaker has a fixed identity (f0, vocal-tract
length, idiosyncratic vowel formants, glottal tilt, jitter/shimmer, breathiness, speaking rate,
accent); each utterance has a new random phone sequence and prosody; each recording has its
own channel (microphone EQ, additive noise at an SNR, reverberation, telephone band).

Synthesis model (all at the internal rate of 16 kHz, on an STFT grid of 512-sample Hann frames,
hop 128 = 8 ms), per frame t and frequency f:

    Y(t, f) = P(t, f) · A_v(t) · G(t, f) · T(t, f)
            + W(t, f) · [A_h(t) · T(t, f) · R(f) + A_n(t) · F(t, f)]

with P the STFT of a jittered/shimmered glottal pulse train, W the STFT of white noise,
G(t, f) = 10^(−tilt·log2(1 + f/f0(t))/20) the glottal source tilt, T the vocal tract
(a cascade of five resonances, |H_k(f)|² = (F_k² + b_k²)² / (((f − F_k)² + b_k²)((f + F_k)² + b_k²)),
b_k = B_k/2), R a high-pass aspiration shape, F a fricative/burst band shape, and A_v, A_h, A_n
the voicing, aspiration and frication amplitudes. The waveform is the overlap-add inverse STFT.

The recording then goes through ``x ↦ g · [(x ∗ h_RIR) ∗ h_mic + n]`` (exponentially decaying
synthetic RIR, random channel-typical EQ, coloured noise at a drawn SNR) and, for ``"phone"``,
300–3400 Hz band-limiting at 8 kHz with 8-bit µ-law: `speakerops.data.channel.recording`, the
same channel package the training augmentation uses.

Modules: `phones` (inventory, accents), `speakers` (identities, the degradation hook), `speech`
(the source-filter model), `utterance` (one recording), `corpus` (writing a corpus).

Everything is a pure function of the seeds: speaker ``i`` of ``make_speakers(n, seed)`` depends
only on ``(seed, i)``; a recording depends only on its speaker and its own seed, so a corpus is
bit-identical for the same seed whatever ``workers`` is.

Calibration (``IDENTITY_SPREAD``, ``SESSION_SPREAD``, ``CHANNELS``; numbers measured on 150
training / 50 held-out speakers × 6 utterances of 2–4 s): the naive mean-MFCC cosine baseline
(``speakerops.eval.baseline``) has an all-pairs EER of about 34 % (17 % with no channel at all,
so per-recording channels double it), while shrinkage LDA on channel-normalized utterance
statistics reaches about 7 % and a small ECAPA-TDNN on mean-normalized log-Mel gets further.
Speaker identity lives in f0, vocal-tract scale, per-speaker and per-vowel formant offsets,
voice quality (tilt, breathiness, jitter/shimmer, bandwidths, a fixed spectral zero) and
accent; within-speaker variation comes from the random phone content, prosody, session
wobble (``SESSION_SPREAD``) and the channel.
"""

from __future__ import annotations

from speakerops.data.channel.recording import CHANNELS
from speakerops.data.synthetic.corpus import generate_corpus, speakers_table
from speakerops.data.synthetic.phones import ACCENTS, PAUSES, PHONOTACTICS
from speakerops.data.synthetic.speakers import (
    AGE_BANDS,
    GENDERS,
    IDENTITY_SPREAD,
    SpeakerProfile,
    make_speakers,
    speaker_matches,
)
from speakerops.data.synthetic.speech import INTERNAL_SAMPLE_RATE, SESSION_SPREAD
from speakerops.data.synthetic.utterance import synthesize_utterance, utterance_plan

__all__ = [
    "ACCENTS",
    "AGE_BANDS",
    "CHANNELS",
    "GENDERS",
    "IDENTITY_SPREAD",
    "INTERNAL_SAMPLE_RATE",
    "PAUSES",
    "PHONOTACTICS",
    "SESSION_SPREAD",
    "SpeakerProfile",
    "generate_corpus",
    "make_speakers",
    "speaker_matches",
    "speakers_table",
    "synthesize_utterance",
    "utterance_plan",
]
