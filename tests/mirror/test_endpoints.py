"""The mirror's ends: the ``[scheme://]HOST[:PORT][/PREFIX]`` form and where credentials come
from (flag, environment, docker's and podman's auth files)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from ocigate.mirror.credentials import credentials, file_credentials
from ocigate.mirror.endpoints import Endpoint, parse_endpoint


def test_endpoints_default_to_https_and_keep_a_prefix() -> None:
    assert parse_endpoint("registry.example:5000/mirror/hub") == Endpoint(
        "https://registry.example:5000", "mirror/hub"
    )
    end = parse_endpoint("http://127.0.0.1:5000/")
    assert (end.url, end.prefix) == ("http://127.0.0.1:5000", "")
    prefixed = parse_endpoint("http://h/team")
    assert prefixed.repository("app") == "team/app"
    assert prefixed.relative("team/app") == "app"
    assert prefixed.relative("other/app") is None


@pytest.mark.parametrize("text", ["ftp://h/x", "http://user:pw@h", "http://h/Bad_Name", "https://"])
def test_bad_endpoints_are_refused_naming_them(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(text)):
        parse_endpoint(text)


def _auth_file(path: Path, key: str, login: str) -> Path:
    encoded = base64.b64encode(login.encode()).decode()
    path.write_text(json.dumps({"auths": {key: {"auth": encoded}}}))
    return path


def test_credentials_come_from_the_first_auth_file_naming_the_host(tmp_path: Path) -> None:
    podman = _auth_file(tmp_path / "auth.json", "reg.example:5000", "pod:one")
    docker = _auth_file(tmp_path / "config.json", "https://reg.example:5000/v1/", "dock:two")
    assert file_credentials("reg.example:5000", [podman, docker]) == ("pod", "one")
    assert file_credentials("reg.example:5000", [tmp_path / "absent", docker]) == ("dock", "two")
    assert file_credentials("other.example", [podman, docker]) is None
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"auths": {"reg.example:5000": {"auth": "%%%"}}}))
    with pytest.raises(ValueError, match="not base64"):
        file_credentials("reg.example:5000", [broken])


def test_a_flag_wins_over_the_environment_and_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    end = parse_endpoint("http://reg.example:5000")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(_auth_file(tmp_path / "a.json", end.host, "f:1")))
    assert credentials(end, None, "MIRROR_SRC_CREDS") == ("f", "1")
    monkeypatch.setenv("MIRROR_SRC_CREDS", "e:2")
    assert credentials(end, None, "MIRROR_SRC_CREDS") == ("e", "2")
    assert credentials(end, "flag:3", "MIRROR_SRC_CREDS") == ("flag", "3")
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        credentials(end, "nocolon", "MIRROR_SRC_CREDS")
