"""Spoofed speech made here, deterministically, with no download (issue #13).

Modules
    tts.py       text-to-speech attacks: espeak-ng, flite, festival (Debian packages)
    vocoder.py   resynthesis of bona fide audio: mel + Griffin-Lim, LPC source-filter
    replay.py    loudspeaker -> real room impulse response -> second microphone (the channel
                 simulator of `speakerops.data.channel`)
    protocol.py  attack-disjoint splits, the items to make, the SASV trial lists
    prepare.py   `speakerops spoof prepare`: files, manifest, protocols, hashes, quarantine
"""
