import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import kill_resume

# One try of one kill at a random moment here (a different moment each CI run);
# `python -m benchmarks.kill_resume --tries 30` (up to two kills a try) is the long run (see
# benchmarks/results/kill_resume_cpu2core.md).
TRIES = 1


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return kill_resume.Runner(str(tmp_path_factory.mktemp("kill_resume")))


@pytest.mark.slow
@settings(
    max_examples=TRIES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kill_fractions=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=1))
def test_a_run_killed_at_random_moments_resumes_bit_identical(runner, kill_fractions):
    name = f"try{len(runner.__dict__.setdefault('tried', []))}"
    runner.tried.append(kill_fractions)
    record = kill_resume.one_try(runner, name, kill_fractions)
    assert record["identical"] and record["each_step_once"]
