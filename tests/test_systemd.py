"""The systemd units in ``deploy/systemd/``: ``systemd-analyze verify`` on copies whose ExecStart points at this
test's venv, and static checks that always run (the units parsed here): every ExecStart is a real ``m4t``
subcommand, the environment file holds valid settings, the worker's stop timeout leaves room for its shutdown grace
(and matches docker-compose's), a dedicated user, a restart policy."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from m4t.cli import build_parser
from m4t.serve import WORKER_CONFIG_EXIT_CODE, WORKER_MALLOC_ENV
from shared.settings import SETTINGS_CLASSES, GatewaySettings, ServeSettings, WorkerSettings

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "deploy" / "systemd"
BIN = Path(sys.executable).parent
INSTALLED_BIN = "/opt/m4t/.venv/bin/"
ENV_FILE = "/etc/m4t/m4t.env"

EXPECTED_UNITS = {"m4t-gateway.service", "m4t-worker@.service", "m4t-webhooks.service", "m4t-flower.service"}

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(path: Path) -> Unit:
    """A unit file as ``{section: [(key, value), ...]}``: keys may repeat (``Environment=``, ``After=``), comments
    start with ``#`` or ``;``, a line ending in a backslash goes on."""
    sections: Unit = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}:{number}: not a key=value line in a section: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= is set {len(found)} times, not once"
    return found[0]


def parse_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"m4t.env:{number}: not KEY=VALUE: {raw!r}"
        assert key not in env, f"m4t.env:{number}: {key} is set twice"
        env[key] = value
    return env


def expand(command: str, env: dict[str, str], *, instance: str = "0", host: str = "host1") -> list[str]:
    """ExecStart as the service manager runs it: specifiers (%i, %H) and ${VAR} from the environment file."""
    command = command.replace("%i", instance).replace("%H", host)
    command = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), command)
    return shlex.split(command)


@pytest.fixture(scope="module")
def units() -> dict[str, Unit]:
    return {path.name: parse_unit(path) for path in sorted(UNITS.glob("*.service"))}


@pytest.fixture(scope="module")
def env_file() -> dict[str, str]:
    return parse_env_file(UNITS / "m4t.env")


def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str]) -> None:
    """The process environment a unit's service gets: only what the environment file (and the unit) sets."""
    import os

    for name in list(os.environ):
        if name.startswith(("M4T_", "FLOWER_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no stray .env file


# --- static checks (always run) -------------------------------------------------------------------------------


def test_the_units_are_all_there(units: dict[str, Unit]) -> None:
    assert set(units) == EXPECTED_UNITS
    assert (UNITS / "m4t.env").is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED_UNITS))
def test_every_unit_runs_as_a_dedicated_user_restarts_and_reads_the_environment_file(
    units: dict[str, Unit], name: str
) -> None:
    unit = units[name]
    assert set(unit) == {"Unit", "Service", "Install"}
    assert one(unit, "Unit", "Description")
    assert "network-online.target" in one(unit, "Unit", "After").split()
    assert one(unit, "Service", "User") == "m4t"
    assert one(unit, "Service", "Group") == "m4t"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert float(one(unit, "Service", "RestartSec")) > 0
    assert one(unit, "Service", "EnvironmentFile") == ENV_FILE
    assert one(unit, "Service", "StateDirectory") == "m4t"
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert float(one(unit, "Service", "TimeoutStopSec")) > 0
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert one(unit, "Service", "ExecStart").startswith(INSTALLED_BIN)


@pytest.mark.parametrize(
    ("name", "command", "role"),
    [
        ("m4t-gateway.service", "gateway", None),
        ("m4t-worker@.service", "worker", "inference"),
        ("m4t-webhooks.service", "worker", "webhooks"),
    ],
)
def test_exec_start_is_a_real_m4t_subcommand(
    units: dict[str, Unit], env_file: dict[str, str], name: str, command: str, role: str | None
) -> None:
    argv = expand(one(units[name], "Service", "ExecStart"), env_file)
    assert argv[0] == INSTALLED_BIN + "m4t"
    assert (BIN / "m4t").is_file()  # the console script the package installs
    args = build_parser().parse_args(argv[1:])  # an unknown subcommand or flag exits here
    assert args.command == command
    if role is not None:
        assert args.role == role
    if name == "m4t-webhooks.service":
        assert args.name == "webhooks@host1"


def test_flower_runs_from_the_venv_on_loopback_with_basic_auth_from_the_environment_file(
    units: dict[str, Unit], env_file: dict[str, str]
) -> None:
    argv = expand(one(units["m4t-flower.service"], "Service", "ExecStart"), env_file)
    assert argv[0] == INSTALLED_BIN + "celery"
    assert (BIN / "celery").is_file()
    assert argv[1] == f"--broker={env_file['M4T_REDIS_URL']}"
    assert argv[2] == "flower"
    assert "--address=127.0.0.1" in argv
    assert not any("basic-auth" in arg or "password" in arg.lower() for arg in argv)  # not shown by `ps`
    user, _, password = env_file["FLOWER_BASIC_AUTH"].partition(":")
    assert user
    assert password
    assert env_file["FLOWER_PORT"].isdigit()
    from flower.options import default_options

    assert {"basic_auth", "port"} <= set(default_options)  # Flower reads FLOWER_BASIC_AUTH and FLOWER_PORT


def test_one_worker_per_gpu_index_and_a_stop_timeout_above_the_shutdown_grace(
    units: dict[str, Unit], env_file: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    worker = units["m4t-worker@.service"]
    environment = dict(item.split("=", 1) for item in values(worker, "Service", "Environment"))
    assert environment == {"M4T_DEVICE": "cuda:%i", "M4T_WORKER_NAME": "gpu%i@%H", **WORKER_MALLOC_ENV}
    # An EnvironmentFile= overrides Environment=: the shared file must leave the per-instance settings alone.
    assert not set(environment) & set(env_file)
    assert one(worker, "Service", "KillMode") == "mixed"
    assert one(worker, "Service", "RestartPreventExitStatus") == str(WORKER_CONFIG_EXIT_CODE)

    instance = {k: v.replace("%i", "1").replace("%H", "host1") for k, v in environment.items()}
    settings_env(monkeypatch, tmp_path, {**env_file, **instance})
    settings = WorkerSettings()
    assert settings.device == "cuda:1"
    assert settings.worker_name == "gpu1@host1"
    stop_timeout = float(one(worker, "Service", "TimeoutStopSec"))
    assert stop_timeout > settings.shutdown_grace_s
    assert stop_timeout > WorkerSettings.model_fields["shutdown_grace_s"].default

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["x-worker"]["stop_grace_period"] == f"{stop_timeout:g}s"  # both deployments give the same time


def test_the_environment_file_holds_valid_settings_of_every_process(
    env_file: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    known: set[str] = set()
    for cls in SETTINGS_CLASSES:
        for name, field in cls.model_fields.items():
            known.add(f"M4T_{name.upper()}")
            choices = getattr(field.validation_alias, "choices", [])
            known.update(str(choice) for choice in choices)
    typos = {key for key in env_file if key.startswith("M4T_")} - known
    assert not typos, f"m4t.env sets settings that do not exist: {sorted(typos)}"

    settings_env(monkeypatch, tmp_path, env_file)
    gateway = GatewaySettings()
    assert gateway.auth_enabled
    assert gateway.redis_url == env_file["M4T_REDIS_URL"]
    assert str(gateway.data_dir) == "/var/lib/m4t"  # the units' StateDirectory
    WorkerSettings()
    ServeSettings()


# --- systemd-analyze verify -----------------------------------------------------------------------------------


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd); the static checks still ran")
    # The units point at /opt/m4t/.venv; verify copies that point at this venv, so that every complaint counts.
    for path in UNITS.glob("*.service"):
        (tmp_path / path.name).write_text(path.read_text().replace(INSTALLED_BIN, f"{BIN}/"))
    done = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(str(p) for p in tmp_path.glob("*.service"))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""


def test_systemd_analyze_has_only_the_missing_install_path_to_say_about_the_units_as_shipped() -> None:
    """The shipped units as they are: the one complaint allowed is that /opt/m4t/.venv is not installed here."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd); the static checks still ran")
    done = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(str(p) for p in UNITS.glob("*.service"))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    missing = re.compile(r"^m4t-[\w@-]+\.service: Command /opt/m4t/\.venv/bin/(m4t|celery) is not executable: ")
    assert all(missing.match(line) for line in complaints), "\n".join(complaints)
