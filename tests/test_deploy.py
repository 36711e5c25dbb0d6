"""The container image and the scheduler examples, checked for what can be checked without Docker,
Kubernetes or Slurm: the files parse, name the one image, set the variables `--shard auto`
reads, and run the command the README gives, which really runs every shard of a job."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchbanana.rules.shards import Shard, parse_shard, shard_of
from tests.conftest import CliResult, results

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
SLURM = ROOT / "deploy" / "slurm"
IMAGE = "ghcr.io/your-org/batchbanana:latest"
COMMAND = "batchbanana run /jobs/job.yaml --shard auto --no-progress"
README = (ROOT / "README.md").read_text(encoding="utf-8")

Writer = Callable[..., Path]
Cli = Callable[..., CliResult]


def _documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]


def _shards_job() -> dict[str, Any]:
    (job,) = _documents("shards-job.yaml")
    return job


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def _array_size(script: str) -> int:
    found = re.search(r"^#SBATCH --array=0-(\d+)\s", script, re.MULTILINE)
    assert found, "the array script declares --array=0-(N-1)"
    return int(found[1]) + 1


def test_the_readme_gives_the_command_and_the_image() -> None:
    """The README shows how to build the image and the one command every shard runs."""
    assert COMMAND in README
    assert f"docker build -t {IMAGE} ." in README


def test_the_dockerfile_builds_a_wheel_and_runs_it_as_a_non_root_user() -> None:
    """A slim Python base, a build stage that makes the wheel from the source tree, the wheel
    installed in the runtime stage, a numeric non-root user, batchbanana as the entry point."""
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) == 2 and all(re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim.*", s)
                                    for s in stages)  # fmt: skip
    assert re.search(r"^ARG PYTHON_VERSION=3\.1[1-9]$", text, re.MULTILINE)
    assert "python -m build --wheel" in text and "pip install /tmp/dist/*.whl" in text
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for name in copied.split():
            assert (ROOT / name).exists(), name
    ignored = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]  # fmt: skip
    assert not {"pyproject.toml", "README.md", "batchbanana"} & set(ignored)
    (user,) = re.findall(r"^USER (\d+):(\d+)$", text, re.MULTILINE)
    assert int(user[0]) >= 1000
    assert re.search(r'^ENTRYPOINT \["batchbanana"\]$', text, re.MULTILINE)
    assert "API_KEY" not in text.replace("-e BATCHBANANA_API_KEY", "")  # never baked in


def test_the_kubernetes_indexed_job_runs_n_shards() -> None:
    """completionMode Indexed, completions = parallelism = BATCHBANANA_SHARDS, the image, the
    README's command, the key from a Secret, the ledgers on the shared volume."""
    job = _shards_job()
    spec = job["spec"]
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    assert spec["completionMode"] == "Indexed"
    container = _container(job)
    env = _env(container)
    shards = int(env["BATCHBANANA_SHARDS"]["value"])
    assert spec["completions"] == spec["parallelism"] == shards > 1
    assert container["image"] == IMAGE
    assert shlex.join(container["command"]) == COMMAND
    key = env["BATCHBANANA_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert key == {"name": "batchbanana-key", "key": "BATCHBANANA_API_KEY"}
    assert "value" not in env["BATCHBANANA_API_KEY"]
    assert "kubectl create secret generic batchbanana-key" in README
    rules = {rule["action"]: rule for rule in spec["podFailurePolicy"]["rules"]}
    assert rules["FailJob"]["onExitCodes"]["values"] == [2]  # bad input: every shard would fail
    assert rules["FailIndex"]["onExitCodes"]["values"] == [1]  # a rerun would send nothing new
    assert spec["backoffLimitPerIndex"] >= 1 and "backoffLimit" not in spec  # one shard's
    pod = spec["template"]["spec"]  # failures never stop the others
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert pod["terminationGracePeriodSeconds"] > 600  # requests in flight finish on SIGTERM
    (claim,) = _documents("pvc.yaml")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (volume,) = pod["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/jobs"}]
    for index in range(shards):  # what Kubernetes sets, read as --shard auto reads it
        environ = {"JOB_COMPLETION_INDEX": str(index), "BATCHBANANA_SHARDS": str(shards)}
        assert parse_shard("auto", environ) == Shard(index, shards)


def test_the_kubernetes_report_job_merges_the_folder() -> None:
    """The report Job runs `batchbanana report` on the job's folder on the same volume."""
    (job,) = _documents("report-job.yaml")
    container = _container(job)
    assert container["image"] == IMAGE
    command = container["command"]
    assert command[:2] == ["batchbanana", "report"] and command[2].startswith("/jobs/")
    assert "BATCHBANANA_API_KEY" not in _env(container)
    assert "report-job.yaml" in README


def test_the_slurm_scripts_parse_and_run_the_array_and_then_the_report() -> None:
    """The array script (--array=0-(N-1)) runs the README's command in the image; the report
    waits for every task with afterany."""
    for path in SLURM.iterdir():
        check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, (path, check.stderr)
    shards = (SLURM / "shards.sbatch").read_text()
    size = _array_size(shards)
    assert size > 1 and IMAGE in shards and COMMAND in shards.replace("\\\n    ", "")
    assert "exec apptainer exec" in shards  # Slurm's SIGTERM reaches batchbanana
    assert "BATCHBANANA_API_KEY=" not in shards.replace("export BATCHBANANA_API_KEY=...", "")
    report = (SLURM / "report.sbatch").read_text()
    assert IMAGE in report and "batchbanana report" in report
    assert '--dependency="afterany:$array"' in (SLURM / "submit.sh").read_text()
    for task in range(size):  # what Slurm sets, read as --shard auto reads it
        environ = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": str(size),
                   "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": str(size - 1)}  # fmt: skip
        assert parse_shard("auto", environ) == Shard(task, size)
    assert "deploy/slurm/submit.sh" in README


@pytest.mark.parametrize("scheduler", ["kubernetes", "slurm"])
def test_the_examples_command_makes_the_whole_job(
    scheduler: str, cli: Cli, write_manifest: Writer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The examples' command, run once per index with the variables the scheduler sets (and
    /jobs standing for a folder here), makes every item of the job exactly once."""
    write_manifest(
        [{"id": f"shot-{n}", "prompt": f"a product shot {n}"} for n in range(9)],
        endpoint="simulate",
    )
    if scheduler == "kubernetes":
        container = _container(_shards_job())
        args = container["command"]
        count = int(_env(container)["BATCHBANANA_SHARDS"]["value"])
        variables = [{"JOB_COMPLETION_INDEX": str(k), "BATCHBANANA_SHARDS": str(count)}
                     for k in range(count)]  # fmt: skip
    else:
        args = shlex.split(COMMAND)
        count = _array_size((SLURM / "shards.sbatch").read_text())
        variables = [{"SLURM_ARRAY_TASK_ID": str(k), "SLURM_ARRAY_TASK_COUNT": str(count)}
                     for k in range(count)]  # fmt: skip
    assert args[0] == "batchbanana"
    args = [arg.replace("/jobs/", f"{tmp_path}/") for arg in args[1:]]
    for environ in variables:
        for name in ("JOB_COMPLETION_INDEX", "BATCHBANANA_SHARDS", "SLURM_ARRAY_TASK_ID",
                     "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):  # fmt: skip
            monkeypatch.delenv(name, raising=False)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        done = cli(*args)
        assert done.exit_code == 0, done.stderr
    out = tmp_path / "out"
    made = [
        r["item"] for k in range(count) for r in results(out / f"ledger.shard-{k}-of-{count}.jsonl")
    ]
    assert sorted(made) == sorted(f"shot-{n}" for n in range(9))
    for k in range(count):
        assert all(shard_of(r["item"], count) == k
                   for r in results(out / f"ledger.shard-{k}-of-{count}.jsonl"))  # fmt: skip
