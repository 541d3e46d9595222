"""speakerops.core.uris: the one parser of model references (no store, fast)."""

from __future__ import annotations

import pytest

from speakerops.core.uris import parse_model_uri, registered_model_uri, run_artifact_uri


def test_registry_versions_aliases_runs_and_paths_parse() -> None:
    v = parse_model_uri("models:/speaker-encoder/7")
    assert (v.kind, v.name, v.version, v.alias) == ("registry", "speaker-encoder", "7", None)
    a = parse_model_uri("models:/speaker-encoder@champion")
    assert (a.kind, a.name, a.version, a.alias) == ("registry", "speaker-encoder", None, "champion")
    r = parse_model_uri("runs:/abc123/model")
    assert (r.kind, r.run_id, r.artifact_path, r.is_registry) == ("run", "abc123", "model", False)
    p = parse_model_uri("artifacts/register/encoder.pt")
    assert (p.kind, p.name, p.is_registry) == ("path", "encoder", False)


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("models:/speaker-encoder", "version number"),
        ("models:/speaker-encoder/latest", "version number"),
        ("models:/@champion", "<name>@<alias>"),
        ("models:/speaker-encoder@", "<name>@<alias>"),
        ("runs:/abc", "runs:/<run_id>/<artifact path>"),
        ("", "expected models:/"),
    ],
)
def test_malformed_references_name_the_uri_and_the_expected_form(uri: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        parse_model_uri(uri)
    assert repr(uri) in str(err.value)


def test_uris_are_built_by_the_same_module() -> None:
    assert registered_model_uri("m", 3) == "models:/m/3"
    assert registered_model_uri("m", alias="champion") == "models:/m@champion"
    assert parse_model_uri(registered_model_uri("m", "12")).version == "12"
    assert run_artifact_uri("r1", "promotion/x") == "runs:/r1/promotion/x"
    with pytest.raises(ValueError, match="exactly one"):
        registered_model_uri("m", 3, "champion")
    with pytest.raises(ValueError, match="exactly one"):
        registered_model_uri("m")
