"""espeak-ng through its library in synchronous mode, one fresh process per utterance.

The `espeak-ng` program starts an audio/event thread even when it writes a file, and its
output was seen to differ between runs of the same command line under load; the library's
state also carries over from one utterance to the next within a process. Synthesizing with
``AUDIO_OUTPUT_SYNCHRONOUS`` (no thread) as the first and only utterance of a new process gives
the same samples every time, provided the process starts the same way: espeak-ng's output
also moved with its environment (e.g. ``HOME``), so :func:`run` starts it with a constant
environment, working directory and command line (the text on stdin, the WAV on stdout).
"""

from __future__ import annotations

import ctypes
import io
import subprocess
import sys

import numpy as np
import soundfile as sf

LIBRARY = "libespeak-ng.so.1"
_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS
_RATE, _PITCH = 1, 3  # espeak_PARAMETER: espeakRATE (words per minute), espeakPITCH (0-99)
_POS_CHARACTER, _CHARS_UTF8, _SSML = 1, 1, 0


def synthesize(voice: str, pitch: int, rate: int, text: str) -> tuple[np.ndarray, int]:
    """int16 samples and the sample rate of ``text`` (call once per process, see module doc)."""
    lib = ctypes.CDLL(LIBRARY)
    sample_rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, None, 0)
    if sample_rate <= 0:
        raise RuntimeError(f"espeak-ng: initialization failed ({sample_rate})")
    chunks: list[np.ndarray] = []
    callback_type = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def collect(wav, n, events) -> int:
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = callback_type(collect)
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise RuntimeError(f"espeak-ng: unknown voice {voice!r}")
    lib.espeak_SetParameter(_RATE, int(rate), 0)
    lib.espeak_SetParameter(_PITCH, int(pitch), 0)
    data = text.encode("utf-8")
    flags = _CHARS_UTF8 | _SSML
    status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
    lib.espeak_Synchronize()
    if status != 0 or not chunks:
        raise RuntimeError(f"espeak-ng: synthesis failed (status {status})")
    return np.concatenate(chunks), int(sample_rate)


ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/"}


def run(
    voice: str, pitch: int, rate: int, text: str, timeout_s: float
) -> subprocess.CompletedProcess:
    """:func:`synthesize` in a fresh process started the same way every time; stdout: WAV."""
    cmd = [sys.executable, "-m", __name__, voice, str(int(pitch)), str(int(rate))]
    return subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=timeout_s,
                          check=False, cwd="/", env=ENV)  # fmt: skip


if __name__ == "__main__":
    samples, sr = synthesize(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.stdin.read())
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, subtype="PCM_16", format="WAV")
    sys.stdout.buffer.write(buffer.getvalue())
