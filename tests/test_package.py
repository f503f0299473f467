"""Packaging and command line: what a `pip install` user gets."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "safety_tradeoff.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    return zipfile.ZipFile(next(out.glob("safety_tradeoff-*.whl")))


def test_wheel_ships_tasks_and_trainers_under_the_package(wheel):
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"safety_tradeoff"}, f"generic top-level names would land in site-packages: {top}"
    assert "safety_tradeoff/cli.py" in names and "safety_tradeoff/toyworld/data.py" in names
    shipped_tasks = {n for n in names if n.startswith("safety_tradeoff/lm_eval_tasks/")}
    repo_tasks = {f"safety_tradeoff/lm_eval_tasks/{p.relative_to(ROOT / 'lm_eval_tasks').as_posix()}"
                  for p in (ROOT / "lm_eval_tasks").rglob("*")
                  if p.is_file() and p.suffix in {".yaml", ".py", ".md", ".jsonl"} and "__pycache__" not in p.parts}
    assert repo_tasks <= shipped_tasks, repo_tasks - shipped_tasks
    shipped_trainers = {n for n in names if n.startswith("safety_tradeoff/trainers/")}
    repo_trainers = {f"safety_tradeoff/trainers/{p.relative_to(ROOT / 'trainers').as_posix()}"
                     for p in (ROOT / "trainers").rglob("*")
                     if p.is_file() and p.suffix in {".yaml", ".py", ".md"} and "__pycache__" not in p.parts}
    assert repo_trainers <= shipped_trainers, repo_trainers - shipped_trainers
    repo_modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "safety_tradeoff").rglob("*.py")
                    if "__pycache__" not in p.parts}
    assert repo_modules <= set(names), repo_modules - set(names)  # every subpackage listed in pyproject.toml
    entry = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "safety-tradeoff = safety_tradeoff.cli:main" in entry


def test_help_names_the_subcommands():
    out = cli("--help")
    assert out.returncode == 0
    for command in ("demo", "toyworld", "tasks-path"):
        assert command in out.stdout
    assert cli("toyworld", "build", "--help").returncode == 0


def test_tasks_path_is_absolute_from_any_directory(tmp_path):
    out = cli("tasks-path", cwd=tmp_path)
    path = Path(out.stdout.strip())
    assert out.returncode == 0 and path.is_absolute() and path.is_dir()
    assert path.resolve() == (ROOT / "lm_eval_tasks").resolve()


def test_bad_toyworld_settings_are_rejected_by_name(tmp_path):
    out = cli("toyworld", "build", "--set", "pretrain_stepz=3", "--cache-dir", str(tmp_path))
    assert out.returncode == 2 and "pretrain_stepz" in out.stderr and "Traceback" not in out.stderr
    out = cli("toyworld", "build", "--config", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "missing.yaml" in out.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = cli("toyworld", "build", "--cache-dir", str(blocker / "sub"))
    assert out.returncode == 2 and "not writable" in out.stderr and "Traceback" not in out.stderr


def test_import_is_light():
    """`import safety_tradeoff` must not import torch or touch the Hub."""
    code = "import sys, safety_tradeoff; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
