"""Settings: URL precedence, driver pinning, password masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore.config import Settings, mask_url, normalize_url
from featurestore.errors import ConfigError


def test_plain_postgresql_url_gets_psycopg_driver() -> None:
    assert normalize_url("postgresql://u:p@h:5433/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").database == "db"


@pytest.mark.parametrize("bad", ["sqlite:///x.db", "mysql://u@h/db", "not a url"])
def test_non_postgres_urls_are_rejected(bad: str) -> None:
    with pytest.raises(ConfigError):
        normalize_url(bad)


def test_password_is_masked() -> None:
    masked = mask_url("postgresql://user:s3cret@host/db")
    assert "s3cret" not in masked and "***" in masked


def test_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEATURESTORE_URL", "postgresql://env@h/envdb")
    monkeypatch.setenv("FEATURESTORE_HOME", str(tmp_path / "home"))
    assert Settings.resolve("postgresql://arg@h/argdb").url.database == "argdb"  # type: ignore[union-attr]
    assert Settings.resolve().url.database == "envdb"  # type: ignore[union-attr]
    monkeypatch.delenv("FEATURESTORE_URL")
    s = Settings.resolve()
    assert s.embedded and s.home == (tmp_path / "home").resolve()


@pytest.mark.parametrize("kw", [{"pool_size": 0}, {"max_overflow": -1}, {"pool_timeout": 0}])
def test_bad_pool_settings(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Settings.resolve("postgresql://u@h/db", **kw)  # type: ignore[arg-type]
