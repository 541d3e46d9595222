"""Text-to-speech attacks from Debian's engines: espeak-ng (formant), flite (diphone /
clustergen), festival (diphone), each run in its own process (`apt-get install espeak-ng flite
festival festvox-kallpc16k`, as `.ci/run` does); the output is the same for the same text,
voice and settings (espeak-ng through its library in a fresh process started the same way
each time, see :mod:`speakerops.data.spoof.espeak`).

The attacker targets a claimed identity: the voice is picked by the target speaker's gender
and the pitch is moved towards the speaker's (``pitch``: 0-1 on the engine's range, drawn per
target speaker by the protocol).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from speakerops.data.audio import load_audio
from speakerops.data.resample import resample
from speakerops.data.spoof import espeak

# engine -> (program that must be on PATH, Debian packages that provide the engine and voices)
ENGINES: dict[str, tuple[str, str]] = {
    "espeak-ng": ("espeak-ng", "espeak-ng"),
    "flite": ("flite", "flite"),
    "festival": ("text2wave", "festival festvox-kallpc16k"),
}


class TTSError(RuntimeError):
    """A text-to-speech engine is missing or failed (the message names the engine and why)."""


def check_engine(engine: str) -> None:
    """Raise ``TTSError`` unless ``engine`` is known and its program is installed."""
    if engine not in ENGINES:
        raise TTSError(f"tts engine {engine!r}: unknown (known: {', '.join(ENGINES)})")
    program, packages = ENGINES[engine]
    if shutil.which(program) is None:
        raise TTSError(
            f"tts engine {engine}: `{program}` not found on PATH "
            f"(install the Debian packages: apt-get install {packages})"
        )


def _command(engine: str, voice: str, text: str, pitch: float, out: Path) -> list[str]:
    if engine == "flite":
        # int_f0_target_mean: the intonation model's mean F0 in Hz (diphone voices follow it)
        f0 = int(round(90 + 130 * pitch))
        return ["flite", "-voice", voice, "--setf", f"int_f0_target_mean={f0}",
                "-t", text, "-o", str(out)]  # fmt: skip
    return ["text2wave", "-eval", f"(voice_{voice})", "-o", str(out)]


def synthesize_tts(
    engine: str, voice: str, text: str, pitch: float, sample_rate: int, timeout_s: float = 60.0
) -> np.ndarray:
    """``text`` spoken by ``engine``/``voice`` at relative ``pitch``, mono float32 at
    ``sample_rate`` (the engine's own rate resampled)."""
    check_engine(engine)
    if engine == "espeak-ng":  # pitch 0-99 (default 50), rate in words per minute
        try:
            proc = espeak.run(voice, int(round(20 + 60 * pitch)), 155, text, timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise TTSError(
                f"tts engine {engine} voice {voice}: timed out after {timeout_s} s"
            ) from exc
        if proc.returncode != 0 or len(proc.stdout) <= 44:
            why = proc.stderr.decode(errors="replace").strip()[-300:] or "no audio"
            raise TTSError(
                f"tts engine {engine} voice {voice}: failed (rc {proc.returncode}): {why}"
            )
        wav, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
        return resample(wav, int(rate), sample_rate)
    with tempfile.TemporaryDirectory(prefix="speakerops-tts-") as tmp:
        out = Path(tmp) / "tts.wav"
        cmd = _command(engine, voice, text, pitch, out)
        stdin = text if engine == "festival" else None
        try:
            proc = subprocess.run(
                cmd,
                input=stdin,
                stdin=subprocess.DEVNULL if stdin is None else None,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TTSError(
                f"tts engine {engine} voice {voice}: timed out after {timeout_s} s"
            ) from exc
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            why = (proc.stderr or proc.stdout or "no output file").strip()[-300:]
            raise TTSError(
                f"tts engine {engine} voice {voice}: failed (rc {proc.returncode}): {why}"
            )
        wav, _ = load_audio(out, sample_rate)
    return wav
