import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)


def test_kernels_import_as_lstmcore_kernels_from_this_checkout():
    import lstmcore.kernels

    assert os.path.samefile(
        os.path.dirname(lstmcore.kernels.__file__), os.path.join(ROOT, "kernels")
    )


def test_a_regular_install_carries_kernels_as_lstmcore_kernels(tmp_path):
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
    assert (target / "lstmcore" / "kernels" / "__init__.py").exists()
    check = run(
        [
            sys.executable,
            "-c",
            "import lstmcore.kernels, lstmcore.kernels.reference as r; print(lstmcore.kernels.__file__)",
        ],
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip().startswith(str(target))


@pytest.mark.parametrize("command", [["lstmcore"], [sys.executable, "-m", "lstmcore"]])
def test_the_command_line_starts(command):
    result = run([*command, "--help"])
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout and "train" in result.stdout


def test_torch_is_not_a_dependency():
    from importlib.metadata import requires

    requirements = " ".join(requires("lstmcore") or [])
    assert "tensorflow" in requirements and "torch" not in requirements
