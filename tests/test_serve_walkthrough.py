"""The README walkthrough as a test, against the real server (uvicorn on 127.0.0.1 in a
thread, the packaged encoder file as `serve.model`): enroll 8 of the 10 LibriSpeech
test-other speakers from 2 utterances each, then verify and identify with every remaining
utterance; the 2 unenrolled speakers must come back "unknown".

The service's decisions are compared with the evaluation code's on the same model, trials and
operating point (whole-file embeddings -> packaged AS-norm + calibration -> Bayes decision,
`speakerops.eval.bias.rates`, speaker bootstrap of `speakerops.eval.bootstrap`): the service's
FMR and FNMR must lie inside the evaluation's 95 % speaker-bootstrap intervals. The model is
tiny (random convolutions), so the walkthrough policy states P_target 0.5 (θ = 0) to get
decisions of both kinds; the rates themselves are poor and are not what is checked.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from speakerops.cli import main as cli_main
from speakerops.data.audio import load_audio
from speakerops.eval.bias import rates
from speakerops.eval.bootstrap import speaker_bootstrap
from speakerops.eval.scoring import Scorer, l2_normalize
from speakerops.serve.app import create_app
from speakerops.serve.client import Client, ClientError
from speakerops.serve.tokens import issue_token

from .conftest import REPO
from .serve_world import SR, build_encoder, librispeech_test_other, make_cfg

pytestmark = pytest.mark.realdata


def _policy(path: Path) -> Path:
    text = (REPO / "registry" / "policy.yaml").read_text()
    assert "p_target: 0.01" in text
    path.write_text(text.replace("p_target: 0.01", "p_target: 0.5", 1))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    encoder = build_encoder()
    model = encoder.save(tmp_path / "encoder.safetensors")
    port = _free_port()
    cfg = make_cfg(
        tmp_path,
        f"serve.model={model}",
        f"serve.policy={_policy(tmp_path / 'policy.yaml')}",
        f"serve.port={port}",
        "serve.enroll.consistency_min_llr=-1e9",  # the tiny model's LLRs say little
    )
    token = issue_token(cfg.serve.tokens, "acme")[1]
    app = create_app(cfg)  # loads serve.model from the file, as `speakerops serve` does
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(1200):  # polls 50 ms apart: the server is up, or it died, or it never came
        if srv.started or not thread.is_alive():
            break
        time.sleep(0.05)
    assert thread.is_alive(), "the server thread died while starting"
    assert srv.started, "the server did not start"
    yield f"http://127.0.0.1:{port}", token, app, encoder
    srv.should_exit = True
    thread.join(timeout=30)


def test_walkthrough_enroll_verify_identify_against_the_real_server(server, capsys):
    url, token, app, encoder = server
    spk = librispeech_test_other()
    names = sorted(spk)
    enrolled, unenrolled = names[:8], names[8:]
    client = Client(url, "acme", token)
    for s in enrolled:
        r = client.enroll(s, spk[s][:2])
        assert r["utterances"] == 2 and r["model_version"] == "local"

    # the evaluation's side: whole-file embeddings, the packaged scorer, the same θ
    scorer = Scorer.from_encoder(encoder, app.state.service.keyring)
    theta = app.state.service.threshold
    assert theta == pytest.approx(0.0)
    emb = {p: encoder.embed(load_audio(p, SR)[0], SR) for s in names for p in spk[s]}
    tpl = {
        s: l2_normalize(l2_normalize(np.stack([emb[p] for p in spk[s][:2]])).mean(0)[None])[0]
        for s in enrolled
    }

    svc_llr, off_llr, labels, trial_spk = [], [], [], []
    for s in names:
        for p in spk[s][2:]:
            # a target trial for enrolled speakers, and one non-target claim of the next one
            claims = [s] if s in enrolled else []
            claims.append(enrolled[(names.index(s) + 1) % len(enrolled)])
            for claim in claims:
                if claim == s and s not in enrolled:
                    continue
                v = client.verify(claim, p)
                assert v["decision"] == ("accept" if v["llr"] >= theta else "reject")
                svc_llr.append(v["llr"])
                norm = scorer.normalization.score_pairs(tpl[claim][None], emb[p][None])
                off_llr.append(float(scorer.to_llr(norm)[0]))
                labels.append(claim == s)
                trial_spk.append(claim)
    y = np.asarray(labels)
    svc = rates(np.asarray(svc_llr), y, theta)
    off = rates(np.asarray(off_llr), y, theta)
    ci = speaker_bootstrap(
        np.asarray(off_llr),
        y,
        np.asarray(trial_spk),
        {
            "fmr": lambda s, yy, **_: rates(s, yy, theta)["fmr"],
            "fnmr": lambda s, yy, **_: rates(s, yy, theta)["fnmr"],
        },
        n_boot=300,
    )
    with capsys.disabled():  # the figures show in the test log
        print(
            f"service FMR {svc['fmr']:.3f} FNMR {svc['fnmr']:.3f}; evaluation {off['fmr']:.3f} "
            f"[{ci['fmr'].low:.3f}, {ci['fmr'].high:.3f}] / {off['fnmr']:.3f} "
            f"[{ci['fnmr'].low:.3f}, {ci['fnmr'].high:.3f}]"
        )
    assert int(y.sum()) == 64 and int((~y).sum()) == 80
    assert ci["fmr"].low <= svc["fmr"] <= ci["fmr"].high
    assert ci["fnmr"].low <= svc["fnmr"] <= ci["fnmr"].high
    # same model, same trials, same embedding path: the per-trial LLRs agree closely
    assert np.corrcoef(svc_llr, off_llr)[0, 1] > 0.8

    # identification: every remaining utterance; the unenrolled must be answered "unknown" at
    # the rate the evaluation side predicts (best LLR over the 8 templates below θ)
    mat = np.stack([tpl[s] for s in enrolled])
    svc_unknown, off_unknown = [], []
    for s in names:
        for p in spk[s][2:]:
            r = client.identify(p)
            assert r["enrolled"] == 8 and len(r["candidates"]) == 5
            assert r["speaker_id"] == (
                r["candidates"][0]["speaker_id"] if r["decision"] == "match" else "unknown"
            )
            if s in unenrolled:
                svc_unknown.append(r["speaker_id"] == "unknown")
                probe = np.repeat(emb[p][None], len(enrolled), axis=0)
                best = scorer.to_llr(scorer.normalization.score_pairs(mat, probe)).max()
                off_unknown.append(bool(best < theta))
    agree = np.mean(np.asarray(svc_unknown) == np.asarray(off_unknown))
    with capsys.disabled():  # the figures show in the test log
        print(
            f"unknown rate for the 2 unenrolled speakers: service {np.mean(svc_unknown):.2f}, "
            f"evaluation {np.mean(off_unknown):.2f}; per-probe agreement {agree:.2f}"
        )
    assert len(svc_unknown) == 16 and agree >= 0.75

    # the thin CLI clients talk to the same server
    assert (
        cli_main(
            [
                "verify",
                "--url",
                url,
                "--tenant",
                "acme",
                "--token",
                token,
                enrolled[0],
                str(spk[enrolled[0]][5]),
            ]
        )
        == 0
    )
    assert '"decision"' in capsys.readouterr().out
    assert (
        cli_main(["forget", "--url", url, "--tenant", "acme", "--token", token, enrolled[0]]) == 0
    )
    with pytest.raises(ClientError, match="speaker.unknown"):
        client.verify(enrolled[0], spk[enrolled[0]][5])
    assert (
        cli_main(
            [
                "identify",
                "--url",
                url,
                "--tenant",
                "acme",
                "--token",
                "wrong",
                str(spk[names[0]][3]),
            ]
        )
        == 1
    )
    assert "auth.invalid" in capsys.readouterr().err
