import keras
import numpy as np
import pytest
import tensorflow as tf

from lstmcore import clipping


def as_numpy(tensors):
    return [t.numpy() for t in tensors]


def test_global_norm_of_three_four_is_five():
    assert float(clipping.global_norm([tf.constant([3.0]), tf.constant([4.0])])) == 5.0


def test_clip_by_global_norm_keeps_direction_and_reports_norm_before():
    clipped, norm = clipping.clip_by_global_norm([tf.constant([3.0]), tf.constant([4.0])], 1.0)
    assert float(norm) == 5.0
    np.testing.assert_allclose(np.concatenate(as_numpy(clipped)), [0.6, 0.8], rtol=1e-6)


def test_clipping_twice_changes_nothing():
    grads = [tf.constant([3.0, -4.0]), tf.constant([[12.0]])]
    once, _ = clipping.clip_by_global_norm(grads, 2.0)
    twice, norm = clipping.clip_by_global_norm(once, 2.0)
    assert float(norm) == pytest.approx(2.0)
    for a, b in zip(as_numpy(once), as_numpy(twice)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 4.9, 5.0, 100.0])
def test_global_norm_after_clip_is_min_of_norm_and_threshold(max_norm):
    clipped, _ = clipping.clip_by_global_norm([tf.constant([3.0, 4.0])], max_norm)
    assert float(clipping.global_norm(clipped)) == pytest.approx(min(5.0, max_norm), rel=1e-6)


def test_per_variable_norm_clips_each_tensor_alone():
    clipped, norms = clipping.clip_by_per_variable_norm(
        [tf.constant([3.0, 4.0]), tf.constant([0.3, 0.4])], 1.0
    )
    assert [float(n) for n in norms] == pytest.approx([5.0, 0.5])
    np.testing.assert_allclose(clipped[0].numpy(), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(clipped[1].numpy(), [0.3, 0.4], rtol=1e-6)


def test_clip_by_value_bounds_every_element():
    (clipped,) = clipping.clip_by_value([tf.constant([-3.0, 0.5, 2.0])], 1.0)
    np.testing.assert_array_equal(clipped.numpy(), [-1.0, 0.5, 1.0])


def test_adaptive_clipping_is_relative_to_each_units_weight_norm():
    params = [tf.constant([[3.0, 0.0], [4.0, 1.0]])]  # column norms 5 and 1
    grads = [tf.constant([[0.6, 1.0], [0.8, 0.0]])]  # column norms 1 and 1
    clipped, any_clipped = clipping.clip_adaptive(grads, params, clipping=0.5)
    # Column 0: 1 / 5 = 0.2 <= 0.5, kept. Column 1: 1 / 1 > 0.5, scaled to 0.5.
    np.testing.assert_allclose(clipped[0].numpy(), [[0.6, 0.5], [0.8, 0.0]], rtol=1e-6)
    assert bool(any_clipped)


def test_adaptive_clipping_lets_zero_weights_move_by_eps():
    clipped, _ = clipping.clip_adaptive(
        [tf.constant([1.0])], [tf.constant([0.0])], clipping=0.1, eps=1e-3
    )
    np.testing.assert_allclose(clipped[0].numpy(), [1e-4], rtol=1e-5)


def make_variables():
    layer = keras.layers.LSTM(2)
    layer.build((None, 3, 1))
    return layer.trainable_variables  # kernel, recurrent_kernel, bias


def test_groups_clip_recurrent_kernels_with_their_own_threshold():
    variables = make_variables()
    grads = [tf.fill(v.shape, 1.0) for v in variables]
    clipped, stats = clipping.clip_gradients(
        grads, variables, method="global_norm", clip_norm=1.0, groups={"recurrent_kernel": 0.5}
    )
    recurrent = [g for g, v in zip(clipped, variables) if "recurrent_kernel" in v.path]
    rest = [g for g, v in zip(clipped, variables) if "recurrent_kernel" not in v.path]
    assert float(clipping.global_norm(recurrent)) == pytest.approx(0.5, rel=1e-6)
    assert float(clipping.global_norm(rest)) == pytest.approx(1.0, rel=1e-6)
    expected_before = np.sqrt(sum(np.prod(v.shape) for v in variables))
    assert float(stats["grad_norm_before_clip"]) == pytest.approx(expected_before, rel=1e-6)
    assert float(stats["grad_norm_after_clip"]) == pytest.approx(np.sqrt(1.25), rel=1e-6)
    assert float(stats["clipped"]) == 1.0


@pytest.mark.parametrize("method", clipping.METHODS)
@pytest.mark.parametrize("groups", [None, {"recurrent_kernel": 0.5}])
def test_reported_norms_are_the_norms_of_the_gradients_before_and_after(method, groups):
    # The step hands clip_gradients the sums of squares it already has; the reported norms
    # must still be the real norms of what goes in and what comes out.
    variables = make_variables()
    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.normal(size=v.shape).astype(np.float32)) for v in variables]
    squares = [tf.reduce_sum(tf.square(g)) for g in grads]
    for given in (None, squares):
        clipped, stats = clipping.clip_gradients(
            grads, variables, method=method, clip_norm=0.8, groups=groups, squared_norms=given
        )
        before, after = clipping.global_norm(grads), clipping.global_norm(clipped)
        assert float(stats["grad_norm_before_clip"]) == pytest.approx(float(before), rel=1e-5)
        assert float(stats["grad_norm_after_clip"]) == pytest.approx(float(after), rel=1e-5)
        assert float(after) < float(before)


def test_no_clipping_still_measures():
    variables = make_variables()
    grads = [tf.fill(v.shape, 2.0) for v in variables]
    clipped, stats = clipping.clip_gradients(grads, variables, method=None)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(clipped, grads))
    assert float(stats["grad_norm_before_clip"]) == float(stats["grad_norm_after_clip"]) > 0
    assert float(stats["clipped"]) == 0.0


def test_small_gradients_are_not_flagged_as_clipped():
    variables = make_variables()
    grads = [tf.fill(v.shape, 1e-3) for v in variables]
    for method in clipping.METHODS:
        _, stats = clipping.clip_gradients(grads, variables, method=method, clip_norm=1.0)
        assert float(stats["clipped"]) == 0.0, method


def test_clip_gradients_works_inside_tf_function():
    variables = make_variables()
    grads = [tf.fill(v.shape, 1.0) for v in variables]
    compiled = tf.function(lambda g: clipping.clip_gradients(g, variables, clip_norm=1.0))
    clipped, stats = compiled(grads)
    assert float(clipping.global_norm(clipped)) == pytest.approx(1.0, rel=1e-6)
    assert float(stats["clipped"]) == 1.0
    assert float(stats["grad_norm_after_clip"]) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize(
    "method, clip_norm, groups, message",
    [
        ("global_norm", -1.0, None, "clip_norm must be a finite number > 0; got -1.0"),
        ("global_norm", 0.0, None, "clip_norm must be a finite number > 0"),
        ("global_norm", float("nan"), None, "clip_norm must be a finite number > 0"),
        ("norm", 1.0, None, "clip must be one of"),
        (
            "value",
            1.0,
            {"recurrent": -2.0},
            r"clip_groups\['recurrent'\] must be a finite number > 0",
        ),
        ("value", 1.0, {"(": 1.0}, "is not a regular expression"),
    ],
)
def test_bad_clip_options_raise(method, clip_norm, groups, message):
    with pytest.raises(ValueError, match=message):
        clipping.check_clip_options(method, clip_norm, groups)
