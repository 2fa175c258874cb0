"""The Procfile is the one description of the system: the systemd units in deploy/systemd/ are
generated from it (and up to date), systemd accepts them, nginx's upstream lists the units' web
ports, and deploy/env.example names every setting optionsite/settings.py reads."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from honcho.environ import parse_procfile

from tests.processes import ROOT

UNITS = ROOT / "deploy" / "systemd"
NGINX_SITE = ROOT / "deploy" / "nginx" / "optionsite.conf"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
PROCESSES = {"web", "feed", "worker", "beat"}


def procfile() -> dict[str, str]:
    return dict(parse_procfile((ROOT / "Procfile").read_text()).processes)


def test_procfile_names_every_process():
    processes = procfile()
    assert set(processes) == PROCESSES
    assert "daphne" in processes["web"] and "$PORT" in processes["web"]
    assert "manage.py runfeed" in processes["feed"]
    assert "celery -A optionsite worker" in processes["worker"]
    assert "celery -A optionsite beat" in processes["beat"]
    # The units quote each command whole in single quotes (deploy/templates/systemd).
    assert not [name for name, command in processes.items() if "'" in command]


@pytest.mark.integration
def test_units_are_up_to_date_with_the_procfile(tmp_path: Path):
    made = subprocess.run(
        ["make", "-s", "deploy-units", f"DEPLOY_UNITS_DIR={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text() for p in UNITS.iterdir()}
    assert sorted(fresh) == sorted(committed), "run `make deploy-units` and commit deploy/systemd/"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"{stale} differ from the Procfile's: run `make deploy-units`"
    services = {n for n in committed if n.endswith(".service")}
    assert services == {"optionsite-web-1.service", "optionsite-web-2.service",
                        "optionsite-feed-1.service", "optionsite-worker-1.service",
                        "optionsite-beat-1.service"}  # fmt: skip


@pytest.mark.integration
def test_systemd_accepts_the_units():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (Debian: apt-get install systemd)")
    units = sorted(str(p) for p in UNITS.iterdir())
    checked = subprocess.run([analyze, "verify", "--man=no", *units],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    assert "optionsite" not in output, output  # no warning about our units either


def test_a_unit_runs_its_procfile_command_with_the_site_settings():
    web = (UNITS / "optionsite-web-1.service").read_text()
    command = procfile()["web"].replace("$", "$$")
    assert f"ExecStart=/bin/bash -c '{command}'" in web
    assert "EnvironmentFile=/srv/optionsite/.env" in web
    assert "User=optionsite" in web and "Restart=always" in web


def test_nginx_upstream_lists_the_web_units_ports():
    ports = sorted(
        re.search(r"^Environment=PORT=(\d+)$", p.read_text(), re.M)[1]  # type: ignore[index]
        for p in UNITS.glob("optionsite-web-*.service")
    )
    upstream = re.search(r"upstream optionsite_web \{(.*?)\}", NGINX_SITE.read_text(), re.S)
    assert upstream is not None
    assert re.findall(r"server 127\.0\.0\.1:(\d+)", upstream[1]) == ports


def settings_read() -> set[str]:
    source = (ROOT / "optionsite" / "settings.py").read_text()
    return set(re.findall(r"\benv_(?:str|bool|int|float|list)\(\s*\"([A-Z0-9_]+)\"", source))


def test_env_example_names_every_setting():
    text = ENV_EXAMPLE.read_text()
    named = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", text, re.M))
    read = settings_read()
    assert len(read) > 40  # the pattern still finds the settings
    missing = sorted(read - named)
    assert not missing, f"deploy/env.example does not mention {missing}: add each with a comment"
    unknown = sorted(named - read)
    assert not unknown, f"deploy/env.example names {unknown}, which settings.py does not read"


def test_env_example_is_read_alike_by_systemd_and_honcho():
    """NAME=value lines only: no quotes, no export, no comment after a value (systemd's
    EnvironmentFile would keep it as part of the value); no real secret."""
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^'\"#\s]*", line), f"line {number}: {line!r}"
        if line.startswith(("DJANGO_SECRET_KEY=", "FIELD_ENCRYPTION_KEY=")):
            assert "replace-me" in line
