"""Every step log line is one logfmt record carrying the job and the clone, on both runtimes.

Loki parses the lines with ``| logfmt`` (the LogQL in helm-values/dashboards/wpclone.json); ``parse_logfmt``
below follows the same grammar (``key=value`` or ``key="quoted \\" value"``, space separated), so a line
that parses here parses there.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.k8s.test_manifests import make_plan
from tests.k8s.test_pod import COPY_CONTENT, COPY_DATABASE, build, container_env
from tests.k8s.test_pod import runtime as k8s_runtime  # noqa: F401  (fixture)
from wpclone.models import RuntimeKind, WpcloneConfig
from wpclone.runtimes.kubernetes import KubernetesRuntime
from wpclone.runtimes.local import AIRFLOW_RUN_ID_ENV, LocalRuntime
from wpclone.runtimes.stepspec import Step
from wpclone.steps.common import CLONE_ID_ENV, JOB_ID_ENV, LogfmtFormatter, logfmt_value, setup_logging

JOB = "clone-20261128T203100-3f9a1c2b"
CLONE = "shop-abc123"


def parse_logfmt(line: str) -> dict[str, str]:
    """logfmt as Loki's parser reads it: ``key=value``, ``key="quoted"`` or a bare ``key``."""
    fields: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        space = line.find(" ", i)
        space = n if space < 0 else space
        eq = line.find("=", i, space)
        if eq < 0:  # a bare key: Loki's parser takes it with an empty value
            fields[line[i:space]] = ""
            i = space
            continue
        assert eq > i, f"not logfmt at {line[i:]!r}"
        key = line[i:eq]
        assert " " not in key and '"' not in key, f"bad key {key!r} in {line!r}"
        i = eq + 1
        if i < n and line[i] == '"':
            i += 1
            value = []
            while line[i] != '"':
                if line[i] == "\\":
                    i += 1
                value.append(line[i])
                i += 1
            i += 1
            fields[key] = "".join(value)
        else:
            end = line.find(" ", i)
            end = n if end < 0 else end
            fields[key] = line[i:end]
            i = end
    return fields


def record(message: str, *args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("wpclone.steps", level, __file__, 1, message, args, None)


def test_a_line_is_logfmt_with_time_level_job_and_clone() -> None:
    formatter = LogfmtFormatter(JOB, CLONE)
    line = formatter.format(record("step=%s event=start tables=%d", "copy-database", 12))
    fields = parse_logfmt(line)
    assert fields["job_id"] == JOB and fields["clone_id"] == CLONE
    assert fields["level"] == "info" and fields["step"] == "copy-database" and fields["event"] == "start"
    assert fields["tables"] == "12"
    datetime.strptime(fields["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert list(fields)[:4] == ["ts", "level", "job_id", "clone_id"]


def test_values_that_need_quoting_are_quoted_and_multiline_messages_stay_one_line() -> None:
    assert logfmt_value("plain-1.2:3+x") == "plain-1.2:3+x"
    assert logfmt_value('two words "q" a=b') == '"two words \\"q\\" a=b"'
    line = LogfmtFormatter('manual__2026 odd "id"', None).format(record("step=x event=warn\nsecond line"))
    assert "\n" not in line
    fields = parse_logfmt(line)
    assert fields["job_id"] == 'manual__2026 odd "id"' and fields["clone_id"] == "-"
    assert fields["event"] == "warn" and "second" in fields


def test_setup_logging_takes_the_ids_from_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging(env={JOB_ID_ENV: JOB, CLONE_ID_ENV: CLONE})
        logging.getLogger("wpclone.steps").warning("step=copy-content event=skip path=%s", "a b")
        err = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    fields = parse_logfmt(err)
    assert (fields["job_id"], fields["clone_id"], fields["level"], fields["path"]) == (
        JOB,
        CLONE,
        "warning",
        "a b",
    )


def test_a_real_step_logs_every_line_with_its_job_and_clone(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "uploads").mkdir(parents=True)
    (src / "uploads" / "a.txt").write_text("hello")
    env = {**os.environ, JOB_ID_ENV: JOB, CLONE_ID_ENV: CLONE}
    done = subprocess.run(
        [sys.executable, "-m", "wpclone.steps", "copy-content", str(src), str(dst)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines
    events = []
    for line in lines:
        fields = parse_logfmt(line)
        assert (fields["job_id"], fields["clone_id"], fields["step"]) == (JOB, CLONE, "copy-content"), line
        events.append(fields["event"])
    assert "start" in events and "summary" in events


def test_the_local_runtime_gives_every_step_its_job_and_clone(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = LocalRuntime(WpcloneConfig(runtime=RuntimeKind.LOCAL))
    plan = make_plan(CLONE)
    monkeypatch.setenv(AIRFLOW_RUN_ID_ENV, JOB)  # what Airflow's task runner exports before execute()
    bare = Step(task_id="probe", step="copy-database")  # no login, no tree: only what every step gets
    env = runtime.step_env(plan, bare)
    assert (env[JOB_ID_ENV], env[CLONE_ID_ENV]) == (JOB, CLONE)
    assert runtime.step_env(plan, bare, job_id="manual__x")[JOB_ID_ENV] == "manual__x"
    monkeypatch.delenv(AIRFLOW_RUN_ID_ENV)
    env = runtime.step_env(plan, bare)
    assert JOB_ID_ENV not in env and env[CLONE_ID_ENV] == CLONE


@pytest.mark.parametrize("step", [COPY_DATABASE, COPY_CONTENT], ids=lambda s: s.step)
def test_every_step_pod_gets_its_job_and_clone(k8s_runtime: KubernetesRuntime, step: Step) -> None:  # noqa: F811
    _, context, pod = build(k8s_runtime, step)
    env = container_env(pod)
    assert env[JOB_ID_ENV] == {"name": JOB_ID_ENV, "value": context["run_id"]}
    assert env[CLONE_ID_ENV] == {"name": CLONE_ID_ENV, "value": make_plan().clone_id}
