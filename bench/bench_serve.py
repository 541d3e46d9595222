"""The verification service under load, and identification at 10 k / 100 k / 1 M templates.

1. **verify over HTTP**: `speakerops serve` in a subprocess on 127.0.0.1 (real uvicorn, the
   real app, a SQLite store in a temporary project), one speaker enrolled from two LibriSpeech
   test-other utterances, then N concurrent clients (an async httpx loop, each client one
   request at a time) post 3 s utterances to ``/v1/<tenant>/verify`` for a bounded time.
   The server runs ``--workers`` processes (``serve.workers``, default 2: one per core of the
   target machine). Printed: p50/p95/p99 latency, requests/s, errors and the server's CPU time
   per request (all its processes),
   beside the in-process cost of the same embedding (``encoder.embed`` on the same 3 s
   waveforms, same thread count: the floor) and of the whole intake (decode, checks, VAD,
   embedding), each as a ratio, wall and CPU (wall times depend on how busy the machine is).
2. **identification**: :class:`speakerops.serve.index.TemplateIndex` (what the service
   searches) filled with synthetic unit vectors of the model's dimension (clustered, seeded;
   the AS-norm cohort is 500 speakers of the same population, as a model's training speakers
   are), queried with noisy copies of enrolled templates: latency per query of exact search (every
   template scored: cosine, AS-norm, calibrated LLR) and of the approximate path (faiss IVF
   candidates re-scored exactly), recall@1 of approximate against exact, build time, memory.

The encoder is the default architecture (conf/model) with untrained weights and a packaged
AS-norm cohort and calibration (latency does not depend on the weights); ``--model`` serves
another encoder file instead. Threads are set deliberately: ``--threads`` torch/OpenMP threads
in the server and for the floor (default 1, as every command runs), the load generator is one
asyncio thread.

    .venv/bin/python bench/bench_serve.py [--clients 4] [--seconds 20] [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPEAKEROPS_SHARED_DATA", REPO.parent / "shared" / "data"))
SR = 16000
TENANT = "bench"


def _threads(n: int) -> None:
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[key] = str(n)


def _pct(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values) * 1000.0, q))


def bench_encoder(path: Path):
    """The default architecture, untrained, with packaged AS-norm + linear calibration fitted
    on LibriSpeech train-clean-100 clips (as a registered model carries them)."""
    import numpy as np
    import torch
    from omegaconf import OmegaConf

    from speakerops.core.config import compose
    from speakerops.data.audio import load_audio
    from speakerops.eval.calibration import LinearCalibration
    from speakerops.eval.scoring import ScoreNormalization
    from speakerops.models.encoder import SpeakerEncoder
    from speakerops.models.features import FeatureConfig
    from speakerops.models.zoo import build_backbone

    cfg = compose([])
    torch.manual_seed(0)
    enc = SpeakerEncoder(
        build_backbone(cfg.model),
        FeatureConfig(**cfg.features),
        OmegaConf.to_container(cfg.model, resolve=True),
    ).eval()
    files = sorted((SHARED / "librispeech" / "train-clean-100").glob("*.flac"))[:60]
    clips = [load_audio(p, SR)[0] for p in files]
    clips = [c for c in clips if c.size >= 6 * SR][:40]
    first = np.stack([enc.embed(c[: 3 * SR], SR) for c in clips])
    second = np.stack([enc.embed(c[3 * SR : 6 * SR], SR) for c in clips])
    norm = ScoreNormalization("asnorm", top_n=10, cohort=first[:20])
    n = len(clips) - 20
    e, t = np.arange(20, 20 + n), np.arange(20, 20 + n)
    pairs = [(i, i, 1) for i in range(n)] + [
        (i, (i + d) % n, 0) for i in range(n) for d in (1, 2, 3)
    ]
    ei = np.array([e[i] for i, _, _ in pairs])
    ti = np.array([t[j] for _, j, _ in pairs])
    scores = norm.score_pairs(first[ei], second[ti])
    cal = LinearCalibration(p_eff=0.5).fit(scores, np.array([y for _, _, y in pairs]))
    enc.extras = {"scoring": norm.to_dict(), "calibration": cal.to_dict()}
    enc.save(path)
    return enc


def utterances(seconds: float = 3.0, n: int = 16):
    """`n` 3 s clips of LibriSpeech test-other speakers (the first speaker's first two whole
    utterances enroll); returns (enroll file paths, [(name, wav bytes, waveform)])."""
    import soundfile as sf

    from speakerops.data.audio import load_audio

    root = SHARED / "librispeech" / "test-other"
    speakers = sorted(d for d in root.iterdir() if d.is_dir())
    enroll = sorted(speakers[0].glob("*.flac"))[:2]
    out = []
    for spk in speakers:
        for p in sorted(spk.glob("*.flac"))[2:4]:
            wav = load_audio(p, SR)[0][: int(seconds * SR)]
            buf = io.BytesIO()
            sf.write(buf, wav, SR, format="WAV", subtype="PCM_16")
            out.append((f"{p.stem}.wav", buf.getvalue(), wav))
    return enroll, out[:n]


def floors(model_path: Path, clips, repeats: int = 3) -> dict[str, float]:
    """Median in-process seconds per clip: the embedding alone, and the service's intake."""
    import numpy as np

    from speakerops.core.config import compose
    from speakerops.models.encoder import SpeakerEncoder
    from speakerops.serve.intake import intake
    from speakerops.serve.settings import ServeSettings

    enc = SpeakerEncoder.load(model_path)
    settings = ServeSettings.from_cfg(compose([]))
    emb, full, cpu_emb, cpu_full = [], [], [], []
    for _ in range(repeats):
        for name, data, wav in clips:
            t0, c0 = time.perf_counter(), time.process_time()
            enc.embed(wav, SR)
            t1, c1 = time.perf_counter(), time.process_time()
            intake(enc, name, data, quality=settings.quality, min_sample_rate=8000)
            t2, c2 = time.perf_counter(), time.process_time()
            emb.append(t1 - t0)
            full.append(t2 - t1)
            cpu_emb.append(c1 - c0)
            cpu_full.append(c2 - c1)
    return {
        "embed": float(np.median(emb)),
        "intake": float(np.median(full)),
        "embed_cpu": float(np.mean(cpu_emb)),
        "intake_cpu": float(np.mean(cpu_full)),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of a process and its live descendants (the worker
    processes of ``serve.workers > 1``; Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_cpu_seconds(int(k)) for k in kids)


def start_server(project: Path, model: Path, threads: int, workers: int = 1):
    from speakerops.core.config import compose
    from speakerops.serve.process import ServerProcess
    from speakerops.serve.tokens import issue_token

    overrides = [
        f"paths.registry_dir={project / 'registry'}",
        f"paths.artifacts_dir={project / 'artifacts'}",
        f"drift.log_dir={project / 'production_log'}",
        f"serve.policy={REPO / 'registry' / 'policy.yaml'}",
        f"serve.model={model}",
        f"serve.workers={workers}",
    ]
    token = issue_token(compose(overrides).serve.tokens, TENANT)[1]
    server = ServerProcess(overrides, log_file=project / "server.log", threads=threads).start()
    return server, server.url, token


async def load(url: str, token: str, clips, clients: int, seconds: float, speaker: str):
    import httpx

    lat: list[float] = []
    errors: dict[str, int] = {}
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(k: int, http: httpx.AsyncClient) -> None:
        i = k
        while time.monotonic() < stop:
            name, data, _ = clips[i % len(clips)]
            i += clients
            t0 = time.perf_counter()
            r = await http.post(
                f"{url}/v1/{TENANT}/verify",
                files={"file": (name, data, "audio/wav")},
                data={"speaker_id": speaker},
                headers=headers,
            )
            dt = time.perf_counter() - t0
            if r.status_code == 200:
                lat.append(dt)
            else:
                errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1

    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(k, http) for k in range(clients)))
        wall = time.perf_counter() - t0
    return lat, errors, wall


def bench_http(args, project: Path, model: Path) -> None:
    import httpx

    from speakerops.serve.client import Client

    enroll, clips = utterances()
    fl = floors(model, clips)
    proc, url, token = start_server(project, model, args.threads, args.workers)
    try:
        Client(url, TENANT, token, http=httpx.Client(timeout=60)).enroll("bench-speaker", enroll)
        load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n== verify over HTTP: 3 s utterances, {args.workers} server process(es) x "
              f"{args.threads} torch thread(s), "
              f"{os.cpu_count()} cores, load average {load_avg} ==")  # fmt: skip
        print(f"floor: embedding {fl['embed'] * 1000:.1f} ms ({fl['embed_cpu'] * 1000:.1f} ms CPU); "
              f"whole intake (decode, checks, VAD, embedding) {fl['intake'] * 1000:.1f} ms "
              f"({fl['intake_cpu'] * 1000:.1f} ms CPU); in process, median wall / mean CPU")  # fmt: skip
        print(f"{'clients':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>7} "
              f"{'p50/embed':>9} {'p50/intake':>10} {'server CPU ms/req':>17} errors")  # fmt: skip
        for c in args.clients:
            asyncio.run(load(url, token, clips, c, 3.0, "bench-speaker"))  # warm every thread
            cpu0 = _cpu_seconds(proc.proc.pid)
            lat, errors, wall = asyncio.run(
                load(url, token, clips, c, args.seconds, "bench-speaker")
            )
            cpu = (_cpu_seconds(proc.proc.pid) - cpu0) / max(1, len(lat) + sum(errors.values()))
            if not lat:
                print(f"{c:>7} no successful request; errors {errors}")
                continue
            p50 = _pct(lat, 50)
            print(
                f"{c:>7} {p50:8.1f} {_pct(lat, 95):8.1f} {_pct(lat, 99):8.1f} "
                f"{len(lat) / wall:7.1f} {p50 / (fl['embed'] * 1000):9.1f} "
                f"{p50 / (fl['intake'] * 1000):10.1f} {cpu * 1000:17.1f} {errors or '-'}"
            )
    finally:
        proc.stop()


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def bench_index(args, model: Path) -> None:
    import numpy as np

    from speakerops.core.config import compose
    from speakerops.eval.scoring import ScoreNormalization, Scorer
    from speakerops.models.encoder import SpeakerEncoder
    from speakerops.serve.index import TemplateIndex
    from speakerops.serve.settings import ServeSettings

    enc = SpeakerEncoder.load(model)
    dim = int(enc.embedding_dim)
    settings = ServeSettings.from_cfg(compose([])).index
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((64, dim)).astype(np.float32)

    def population(m: int) -> np.ndarray:
        """Clustered unit vectors (64 groups: channels, languages...), in chunks."""
        out = np.empty((m, dim), np.float32)
        for a in range(0, m, 100_000):
            b = min(m, a + 100_000)
            x = centres[rng.integers(0, 64, b - a)] + rng.standard_normal((b - a, dim), np.float32)
            out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    # the AS-norm cohort: 500 speakers of the same population, top-100 (as a model's training
    # speakers are); the model's packaged calibration
    cohort = ScoreNormalization("asnorm", top_n=100, cohort=population(500))
    scorer = Scorer(cohort, Scorer.from_encoder(enc).calibration)
    load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n== identification: {dim}-dim synthetic templates, top-5, exact_max "
          f"{settings.exact_max}, IVF nprobe {settings.nprobe}, {settings.candidates} "
          f"candidates re-scored, load average {load_avg} ==")  # fmt: skip
    print(f"{'templates':>9} {'build s':>8} {'exact ms':>9} {'approx ms':>9} {'approx p95':>10} "
          f"{'recall@1':>8} {'queries':>7} {'max RSS GB':>10}")  # fmt: skip
    for n in args.sizes:
        # exact_max 0: the approximate index is built (its lists trained) at every size;
        # exact search is asked for explicitly (what the service does up to exact_max)
        index = TemplateIndex(replace(settings, exact_max=0), scorer, "bench", "1")
        vecs = population(n)
        keys = [f"k{i}" for i in range(n)]
        picks = rng.choice(n, args.queries, replace=False)
        noise = rng.standard_normal((args.queries, dim), np.float32)
        probes = vecs[picks] + noise / np.sqrt(dim)  # cosine ~0.7 to the enrolled template
        t0 = time.perf_counter()
        index.add_vectors(TENANT, vecs, keys, keys, np.full(n, 8.0))
        build = time.perf_counter() - t0
        del vecs
        n_exact = args.queries if n < 1_000_000 else min(args.queries, args.exact_queries_1m)
        exact, approx, same = [], [], 0
        for i, q in enumerate(probes):
            t0 = time.perf_counter()
            a_hit = index.search(TENANT, q, 3.0, 5)
            approx.append(time.perf_counter() - t0)
            if i < n_exact:
                t0 = time.perf_counter()
                e_hit = index.search(TENANT, q, 3.0, 5, exact=True)
                exact.append(time.perf_counter() - t0)
                same += a_hit[0].speaker_key == e_hit[0].speaker_key
        print(
            f"{n:>9} {build:8.1f} {_pct(exact, 50):9.2f} {_pct(approx, 50):9.2f} "
            f"{_pct(approx, 95):10.2f} {same / n_exact:8.3f} {n_exact:>3}/{len(probes):<3} {_rss_gb():10.2f}"
        )
        del index
    print("(latency: median per query; recall@1: approximate top-1 = exact top-1)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", default="1,4", help="concurrent clients, comma-separated")
    ap.add_argument("--seconds", type=float, default=20.0, help="load time per client count")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per process")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="identification sizes")
    ap.add_argument("--queries", type=int, default=200, help="identification queries per size")
    ap.add_argument("--exact-queries-1m", type=int, default=50, help="exact queries at 1 M")
    ap.add_argument("--workers", type=int, default=2, help="server processes (serve.workers)")
    ap.add_argument("--model", type=Path, default=None, help="an encoder file to serve")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-index", action="store_true")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.sizes = [int(s) for s in args.sizes.split(",")]
    _threads(args.threads)
    from speakerops.core.keys import new_key_text

    os.environ.setdefault("SPEAKEROPS_DATA_KEY", new_key_text())
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        project = Path(tmp)
        model = args.model or project / "encoder.safetensors"
        if args.model is None:
            bench_encoder(model)
        if not args.skip_http:
            bench_http(args, project, model)
        if not args.skip_index:
            bench_index(args, model)


if __name__ == "__main__":
    main()
