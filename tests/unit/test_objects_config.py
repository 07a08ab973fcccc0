"""``store: kind: objects``: the S3 and database keys, the AWS variables standing in for them,
the environment, errors naming the key, and secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocigate.cli import main
from ocigate.config import MASK, load_settings
from ocigate.objects_config import S3Config
from ocigate.store.objects.store import bucket_config
from ocigate.store_config import ObjectsStoreConfig

EXAMPLE = """\
store:
  kind: objects
  data_dir: /var/lib/ocigate
  s3:
    endpoint: http://rgw.internal:7480
    bucket: registry
    region: eu-west-1
    access_key: AKIAEXAMPLE
    secret_key: s3cr3t-s3
    prefix: prod/
    path_style: true
    tls_verify: false
    ca_file: /etc/ssl/rgw.pem
  database:
    url: postgresql://ocigate:pg-pa55@db.internal:5432/registry
    pool_size: 20
"""

AWS_NAMES = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AWS_NAMES:
        monkeypatch.delenv(name, raising=False)


def _objects(path: Path) -> ObjectsStoreConfig:
    store = load_settings(path).store
    assert isinstance(store, ObjectsStoreConfig)
    return store


def test_the_documented_example_parses(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(EXAMPLE)
    store = _objects(config)
    assert store.s3.endpoint == "http://rgw.internal:7480" and store.s3.bucket == "registry"
    assert store.s3.region == "eu-west-1" and store.s3.prefix == "prod/"
    assert store.s3.path_style and not store.s3.tls_verify
    assert store.s3.ca_file == Path("/etc/ssl/rgw.pem")
    assert store.database.pool_size == 20 and store.database.migrate
    assert store.data_dir == Path("/var/lib/ocigate")


def test_aws_variables_fill_unset_keys_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env.example:9000")
    config = tmp_path / "c.yaml"
    config.write_text(
        "store:\n  kind: objects\n  s3: {bucket: b, access_key: from-file}\n"
        "  database: {url: 'postgresql://db/r'}\n"
    )
    s3 = _objects(config).s3
    assert s3.access_key == "from-file"  # the file wins over AWS_*
    assert s3.secret_key == "env-secret" and s3.region == "ap-south-1"
    assert s3.endpoint == "http://env.example:9000"


def test_every_key_from_ocigate_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIGATE_STORE__KIND", "objects")
    monkeypatch.setenv("OCIGATE_STORE__S3__BUCKET", "env-bucket")
    monkeypatch.setenv("OCIGATE_STORE__S3__ENDPOINT", "http://127.0.0.1:7480")
    monkeypatch.setenv("OCIGATE_STORE__S3__PATH_STYLE", "false")
    monkeypatch.setenv("OCIGATE_STORE__S3__REDIRECT", "true")
    monkeypatch.setenv("OCIGATE_STORE__S3__REDIRECT_EXPIRY", "5m")
    monkeypatch.setenv("OCIGATE_STORE__DATABASE__URL", "postgresql://u:p@h/d")
    monkeypatch.setenv("OCIGATE_STORE__DATABASE__POOL_SIZE", "3")
    store = load_settings().store
    assert isinstance(store, ObjectsStoreConfig)
    assert store.s3.bucket == "env-bucket" and not store.s3.path_style
    assert store.s3.redirect and store.s3.redirect_expiry == 300
    assert store.database.pool_size == 3


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("s3: {bucket: b, bucktt: c}", "store.objects.s3.bucktt"),
        ("s3: {bucket: b, endpoint: rgw:7480}", "store.objects.s3.endpoint"),
        ("s3: {bucket: b, part_size: 1024}", "store.objects.s3.part_size"),
        ("s3: {endpoint: 'http://x'}", "store.objects.s3.bucket"),
    ],
)
def test_bad_keys_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, named: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"store:\n  kind: objects\n  {text}\n  database: {{url: 'postgresql://db/r'}}\n"
    )
    assert main(["config", "check", str(config)]) == 2
    assert named in capsys.readouterr().err


def test_a_database_url_of_another_kind_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "store:\n  kind: objects\n  s3: {bucket: b}\n  database: {url: 'mysql://x'}\n"
    )
    assert main(["config", "check", str(config)]) == 2
    assert "store.objects.database.url" in capsys.readouterr().err


def test_config_check_masks_every_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    ca = tmp_path / "rgw.pem"
    ca.write_text("a CA bundle")  # config check reads every file the settings name
    config.write_text(EXAMPLE.replace("/etc/ssl/rgw.pem", str(ca)))
    assert main(["config", "check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "s3cr3t-s3" not in out and "pg-pa55" not in out
    shown = json.loads(out)["store"]
    assert shown["s3"]["secret_key"] == MASK and shown["s3"]["bucket"] == "registry"
    assert MASK in shown["database"]["url"] and "db.internal" in shown["database"]["url"]
    assert "s3cr3t-s3" not in repr(_objects(config))


def test_config_check_names_an_unreadable_ca_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(EXAMPLE.replace("/etc/ssl/rgw.pem", str(tmp_path / "missing.pem")))
    assert main(["config", "check", str(config)]) == 2
    assert "store.s3.ca_file: cannot read" in capsys.readouterr().err


def test_every_bucket_key_reaches_the_bucket_and_secrets_stay_out_of_its_repr() -> None:
    s3 = S3Config(
        bucket="b",
        endpoint="http://s3.example:9000",
        access_key="AKIA",
        secret_key="s3cr3t-s3",
        session_token="t0ken-t0ken",
        prefix="p/",
        path_style=False,
        connect_timeout=2,
        request_timeout=7,
        retries=4,
    )
    bucket = bucket_config(s3)
    # A session token in the file was dropped before: only AWS_SESSION_TOKEN reached obstore.
    assert bucket.session_token == "t0ken-t0ken" and bucket.secret_key == "s3cr3t-s3"
    assert (bucket.prefix, bucket.path_style, bucket.max_retries) == ("p/", False, 4)
    assert (bucket.connect_timeout, bucket.request_timeout) == (2, 7)
    assert "s3cr3t-s3" not in repr(bucket) and "t0ken-t0ken" not in repr(bucket)
