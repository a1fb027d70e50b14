"""Settings: defaults, bad values stop start-up with the variable named, and every one is documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from webapp.config import SETTINGS, SettingError, load_settings, parse_size, settings_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    settings = load_settings({})
    assert settings["PORT"] == 8000
    assert settings["HOST"] == "127.0.0.1"
    assert settings["MAX_UPLOAD_SIZE"] == 512 * 1024**2
    assert settings["MAX_CONTEXT_SIZE"] == 2 * 1024**3
    assert settings["MAX_CONTEXT_FILES"] == 50_000
    assert settings["CONCURRENT_BUILDS"] == 2
    assert settings["LOG_CAP"] == 16 * 1024**2


@pytest.mark.parametrize(("text", "size"), [("512M", 512 * 1024**2), ("2G", 2 * 1024**3), ("100", 100),
                                            ("16MiB", 16 * 1024**2), ("4k", 4096)])
def test_sizes_read_like_a_person_writes_them(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("name", "value"), [("PORT", "eighty"), ("PORT", "70000"), ("CONCURRENT_BUILDS", "0"),
                                             ("MAX_UPLOAD_SIZE", "lots"), ("DEFAULT_BUILDER", "kaniko"),
                                             ("BUILD_TIMEOUT", "-5")])
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingError) as exc:
        load_settings({f"LAYERDECK_{name}": value})
    assert f"LAYERDECK_{name}={value!r}" in str(exc.value)


def test_the_command_refuses_to_start_with_a_bad_setting() -> None:
    result = subprocess.run([sys.executable, "-m", "webapp.cli", "serve"], capture_output=True, text=True,
                            env={"LAYERDECK_PORT": "eighty", "PATH": "/usr/bin:/bin"}, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert "LAYERDECK_PORT='eighty' is not valid" in result.stderr


def test_every_setting_is_documented_once_with_its_default() -> None:
    docs = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    assert settings_markdown() in docs, "regenerate the table with `layerdeck settings --markdown`"
    for setting in SETTINGS:
        assert docs.count(f"`{setting.env}`") == 1
