import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, **kwargs):
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=300, **kwargs)


def test_kernels_import_as_lstmcore_kernels_from_this_checkout():
    import lstmcore.kernels

    assert os.path.samefile(
        os.path.dirname(lstmcore.kernels.__file__), os.path.join(ROOT, "kernels")
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A regular (non-editable) install of this checkout into a folder: ``(folder, tmp)``."""
    tmp_path = tmp_path_factory.mktemp("install")
    # Build from a clean copy: an in-tree build/ folder could carry stale files.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            "build", "*.egg-info", ".git", ".gpu", "runs", "__pycache__", ".pytest_cache"
        ),
    )
    target = tmp_path / "site"
    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--target",
            str(target),
            str(source),
        ],
    )
    assert result.returncode == 0, result.stderr
    return target, tmp_path


@pytest.mark.slow
def test_a_regular_install_carries_kernels_and_benchmarks_inside_lstmcore(installed):
    target, tmp_path = installed
    assert (target / "lstmcore" / "kernels" / "__init__.py").exists()
    assert (target / "lstmcore" / "benchmarks" / "windowing.py").exists()
    assert not (target / "benchmarks").exists()  # no top-level package to collide with
    check = run(
        [
            sys.executable,
            "-c",
            (
                "import lstmcore.kernels, lstmcore.kernels.reference, "
                "lstmcore.benchmarks.throughput as t; "
                "print(lstmcore.kernels.__file__); print(t.__file__)"
            ),
        ],
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert check.returncode == 0, check.stderr
    kernels, throughput = check.stdout.split()
    assert kernels.startswith(str(target)) and throughput.startswith(str(target))


def test_a_users_benchmarks_folder_does_not_shadow_lstmcores(installed):
    target, tmp_path = installed
    work = tmp_path / "work"
    (work / "benchmarks").mkdir(parents=True)
    (work / "benchmarks" / "__init__.py").write_text("")
    (work / "benchmarks" / "windowing.py").write_text(
        "def main(argv):\n    print('the user benchmark ran')\n"
    )
    result = run(
        [sys.executable, "-m", "lstmcore", "bench", "windowing", "--help"],
        cwd=str(work),
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert result.returncode == 0, result.stderr
    assert "the user benchmark ran" not in result.stdout
    assert "--smoke" in result.stdout  # lstmcore's windowing benchmark's own help


def test_lstmcore_never_imports_its_benchmarks():
    import pathlib

    for folder in ("lstmcore", "kernels"):
        for path in pathlib.Path(ROOT, folder).glob("*.py"):
            text = path.read_text()
            assert "import benchmarks" not in text and "from benchmarks" not in text, path
            assert "from lstmcore.benchmarks" not in text, path


@pytest.mark.parametrize("command", [["lstmcore"], [sys.executable, "-m", "lstmcore"]])
def test_the_command_line_starts(command):
    result = run([*command, "--help"])
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout and "train" in result.stdout


def test_torch_is_not_a_dependency():
    from importlib.metadata import requires

    requirements = " ".join(requires("lstmcore") or [])
    assert "tensorflow" in requirements and "torch" not in requirements
