"""Settings are checked once, when a server, process UDF or agent is built."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from udf_handlers import Recorder

from aioudf import Agent, UnixServer
from aioudf.cli import cli, env_name
from aioudf.config import (
    DEFAULT_GRACE,
    DEFAULT_WARN_BLOCKED,
    Config,
    ConnectionSettings,
    ProcessSettings,
    ServerSettings,
)
from aioudf.errors import ConfigError
from aioudf.serving._process import run
from aioudf.testing import InProcess, MemoryPipe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "moving_avg.py"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_backlgo": 5}, "unknown setting 'max_backlgo' (did you mean 'max_backlog'?)"),
        ({"colour": "red"}, "unknown setting 'colour'; the settings are: max_frame_size,"),
        ({"max_frame_size": 0}, "invalid setting max_frame_size=0: must be a whole number"),
        ({"max_output": -1}, "invalid setting max_output=-1"),
        ({"max_backlog": 2.5}, "invalid setting max_backlog=2.5"),
        ({"read_size": True}, "invalid setting read_size=True"),
        ({"grace": -5}, "invalid setting grace=-5: must be 0 or more seconds"),
        ({"stop_timeout": float("nan")}, "invalid setting stop_timeout=nan"),
        ({"warn_blocked": -1.0}, "invalid setting warn_blocked=-1.0"),
        ({"mode": "660"}, "invalid setting mode='660': give file permissions as an int"),
    ],
)
def test_a_bad_setting_is_named(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        Config.of(**settings)
    assert message in str(error.value)
    assert isinstance(error.value, ValueError)


def test_settings_change_a_copy() -> None:
    base = Config(max_backlog=100)
    changed = base.with_settings(grace=0)
    assert (changed.max_backlog, changed.grace, base.grace) == (100, 0, DEFAULT_GRACE)
    assert Config.of(base) is base


def test_a_misspelt_server_setting_fails_at_construction(tmp_path: Path) -> None:
    # Before: the server started, and every connection failed on the keyword.
    with pytest.raises(ConfigError, match="did you mean 'max_backlog'"):
        UnixServer(Recorder, tmp_path / "udf.sock", max_backlgo=5)  # type: ignore[call-arg]
    assert not (tmp_path / "udf.sock").exists()
    server = UnixServer(Recorder, tmp_path / "udf.sock", grace=1, max_output=4096)
    assert (server.grace, server.config.max_output) == (1, 4096)


async def test_an_agent_and_the_in_process_target_check_their_settings() -> None:
    with pytest.raises(ConfigError, match="max_output=0"):
        Agent(Recorder(), MemoryPipe(), MemoryPipe(), max_output=0)
    with pytest.raises(ConfigError, match="unknown setting 'backlgo'"):
        InProcess(Recorder, {"backlgo": 1})


def test_a_process_udf_fails_before_reading_stdin() -> None:
    with pytest.raises(ConfigError, match="max_frame_size=-1"):
        run(Recorder, argv=[], max_frame_size=-1)


def test_the_command_line_names_a_bad_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    socket = tmp_path / "udf.sock"
    argv = ["serve", f"{EXAMPLE}:MovingAvg", "--socket", str(socket), "--grace", "-5"]
    assert cli(argv) == 2
    assert "aioudf serve: error: invalid setting grace=-5.0: must be 0 or more seconds" in (
        capsys.readouterr().err
    )
    assert not os.path.exists(socket)


def test_the_keyword_settings_are_the_config_fields() -> None:
    # One list of names for mypy (the TypedDicts) and one for the run-time check.
    fields = [f.name for f in dataclasses.fields(Config)]
    assert sorted(ServerSettings.__annotations__) == sorted(fields)
    assert set(ConnectionSettings.__annotations__) < set(ProcessSettings.__annotations__)


def test_a_config_passed_to_another_process_comes_back_equal_and_checked() -> None:
    config = Config(max_backlog=7, mode=0o600, warn_blocked=0.25)
    assert Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        Config.from_dict({"colour": "red"})
    with pytest.raises(ConfigError, match="invalid setting max_backlog=0"):
        Config.from_dict({"max_backlog": 0})


def test_warn_blocked_unset_is_on_where_aioudf_owns_the_loop_only() -> None:
    assert Config().blocked_threshold(owns_loop=True) == DEFAULT_WARN_BLOCKED
    assert Config().blocked_threshold(owns_loop=False) == 0
    assert Config(warn_blocked=0).blocked_threshold(owns_loop=True) == 0
    assert Config(warn_blocked=0.5).blocked_threshold(owns_loop=False) == 0.5


def test_every_config_field_has_a_flag_and_an_environment_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli(["serve", "--help"])
    usage = capsys.readouterr().out
    for field in dataclasses.fields(Config):
        flag = "--" + field.name.replace("_", "-")
        assert flag in usage
        assert env_name(flag) in usage.replace("\n", "").replace(" ", "")
