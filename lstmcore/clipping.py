"""Gradient clipping as pure functions of (gradients, variables) that report what they measured.

Every function returns the clipped gradients together with the norms it measured, because the
norm before clipping is the number a user needs to see (Keras's ``clipnorm`` hides it and clips
each tensor separately, before gradients are aggregated across replicas). :func:`clip_gradients`
is the entry point used by the training step: it applies one method, optionally with separate
thresholds for groups of variables chosen by name, and returns a dict of scalar statistics.
Clipping runs on final gradients: under a distribution strategy, after cross-replica
aggregation.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import tensorflow as tf

METHODS = ("global_norm", "per_variable_norm", "value", "adaptive")


def global_norm(tensors: Sequence[tf.Tensor]) -> tf.Tensor:
    """Returns ``sqrt(sum_i ||t_i||^2)`` over all tensors (``None`` entries are skipped).

    Args:
      tensors: tensors of any shapes.

    Returns:
      A float32 scalar.
    """
    squares = [tf.reduce_sum(tf.square(tf.cast(t, tf.float32))) for t in tensors if t is not None]
    if not squares:
        return tf.constant(0.0)
    return tf.sqrt(tf.add_n(squares))


def clip_by_global_norm(
    grads: Sequence[tf.Tensor], max_norm: float, *, norm: tf.Tensor | None = None
) -> tuple[list[tf.Tensor], tf.Tensor]:
    """Scales all gradients together so that their global norm is at most ``max_norm``.

    ``g_i <- g_i * min(1, max_norm / ||g||)`` with ``||g||`` the global norm; the direction of
    the update is kept.

    Args:
      grads: gradients (``None`` entries pass through).
      max_norm: the largest global norm allowed, ``> 0``.
      norm: their global norm when already known (saves a pass over the gradients).

    Returns:
      ``(clipped, norm)``: the clipped gradients and the global norm before clipping.

    References:
      Pascanu, Mikolov & Bengio, On the difficulty of training recurrent neural networks, 2013.
    """
    if norm is None:
        norm = global_norm(grads)
    scale = _scale(norm, max_norm)
    return [None if g is None else g * tf.cast(scale, g.dtype) for g in grads], norm


def clip_by_per_variable_norm(
    grads: Sequence[tf.Tensor], max_norm: float, *, norms: Sequence[tf.Tensor] | None = None
) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
    """Scales each gradient tensor separately so that its norm is at most ``max_norm``.

    This is what Keras's ``clipnorm`` does; it changes the direction of the update.

    Args:
      grads: gradients (``None`` entries pass through).
      max_norm: the largest norm allowed per tensor, ``> 0``.
      norms: each tensor's norm when already known (saves a pass over the gradients).

    Returns:
      ``(clipped, norms)``: the clipped gradients and each tensor's norm before clipping.
    """
    known = norms
    clipped, norms = [], []
    for index, g in enumerate(grads):
        if g is None:
            clipped.append(None)
            norms.append(tf.constant(0.0))
            continue
        norm = tf.norm(tf.cast(g, tf.float32)) if known is None else known[index]
        scale = _scale(norm, max_norm)
        clipped.append(g * tf.cast(scale, g.dtype))
        norms.append(norm)
    return clipped, norms


def clip_by_value(grads: Sequence[tf.Tensor], max_value: float) -> list[tf.Tensor]:
    """Clips every gradient element to ``[-max_value, max_value]``.

    Args:
      grads: gradients (``None`` entries pass through).
      max_value: the largest absolute value allowed, ``> 0``.

    Returns:
      The clipped gradients.
    """
    return [None if g is None else tf.clip_by_value(g, -max_value, max_value) for g in grads]


def unitwise_norm(x: tf.Tensor) -> tf.Tensor:
    """Returns the norm of each output unit of a parameter, broadcastable against it.

    A unit is one output column: for a kernel ``[F, U]`` the norm over ``F``; for a bias
    ``[U]`` (and scalars) the absolute value of each element; for rank 3 and above the norm
    over every axis but the last.

    Args:
      x: a parameter or gradient tensor.

    Returns:
      A tensor of norms with the rank of ``x`` (reduced axes kept with size 1).
    """
    x = tf.cast(x, tf.float32)
    if x.shape.rank is None or x.shape.rank <= 1:
        return tf.abs(x)
    axes = list(range(x.shape.rank - 1))
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=axes, keepdims=True))


def clip_adaptive(
    grads: Sequence[tf.Tensor],
    params: Sequence[tf.Tensor],
    clipping: float,
    eps: float = 1e-3,
) -> tuple[list[tf.Tensor], tf.Tensor]:
    """Adaptive gradient clipping: each unit's gradient relative to its weight norm.

    For every output unit ``u`` of every parameter ``W``:
    ``g_u <- g_u * (clipping * max(||W_u||, eps)) / ||g_u||`` where
    ``||g_u|| / max(||W_u||, eps) > clipping``, unchanged otherwise.

    Args:
      grads: gradients (``None`` entries pass through).
      params: the parameters, in the same order.
      clipping: the largest ratio of gradient norm to weight norm allowed, ``> 0``.
      eps: the smallest weight norm used, so that zero-initialised weights can move.

    Returns:
      ``(clipped, any_clipped)``: the clipped gradients and whether any unit was clipped.

    References:
      Brock, De, Smith & Simonyan, High-Performance Large-Scale Image Recognition Without
      Normalization, 2021, section 4.1.
    """
    clipped, flags = [], []
    for g, p in zip(grads, params):
        if g is None:
            clipped.append(None)
            continue
        max_norm = clipping * tf.maximum(unitwise_norm(getattr(p, "value", p)), eps)
        grad_norm = unitwise_norm(g)
        trigger = grad_norm > max_norm
        scale = tf.where(trigger, max_norm / tf.maximum(grad_norm, 1e-30), 1.0)
        clipped.append(g * tf.cast(scale, g.dtype))
        flags.append(tf.reduce_any(trigger))
    any_clipped = tf.reduce_any(tf.stack(flags)) if flags else tf.constant(False)
    return clipped, any_clipped


def check_clip_options(method, clip_norm, groups) -> None:
    """Raises ``ValueError`` for a clipping configuration that cannot work.

    Args:
      method: one of ``METHODS`` or ``None``.
      clip_norm: the threshold, a finite number ``> 0`` when ``method`` is set.
      groups: ``None`` or a dict of variable-name pattern (a regular expression searched in
        the variable's path) to a threshold.
    """
    if method is not None and method not in METHODS:
        raise ValueError(f"clip must be one of {METHODS} or None; got {method!r}")
    if method is None:
        return
    _check_threshold("clip_norm", clip_norm)
    if groups is None:
        return
    if not isinstance(groups, dict) or not groups:
        raise ValueError(
            "clip_groups must be a non-empty dict of variable-name pattern to threshold, "
            f"e.g. {{'recurrent_kernel': 0.5}}; got {groups!r}"
        )
    for pattern, threshold in groups.items():
        try:
            re.compile(pattern)
        except (re.error, TypeError) as error:
            raise ValueError(
                f"clip_groups key {pattern!r} is not a regular expression: {error}"
            ) from None
        _check_threshold(f"clip_groups[{pattern!r}]", threshold)


def _check_threshold(name, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")


def group_variables(variables, groups: dict | None) -> list[tuple[str, float | None, list[int]]]:
    """Assigns each variable to the first group whose pattern its path matches.

    Args:
      variables: the trainable variables.
      groups: ``None`` or a dict of pattern to threshold (order matters: first match wins).

    Returns:
      A list of ``(group name, threshold or None for the default, variable indices)``,
      the default group (``"default"``) last; empty groups are left out.
    """
    assigned: dict[str, list[int]] = {pattern: [] for pattern in (groups or {})}
    rest = []
    for index, variable in enumerate(variables):
        path = getattr(variable, "path", None) or variable.name
        matches = [pattern for pattern in groups or {} if re.search(pattern, path)]
        (assigned[matches[0]] if matches else rest).append(index)
    result = [(p, float((groups or {})[p]), idx) for p, idx in assigned.items() if idx]
    if rest:
        result.append(("default", None, rest))
    return result


def clip_gradients(
    grads: Sequence[tf.Tensor],
    variables: Sequence[tf.Variable],
    *,
    method: str | None = "global_norm",
    clip_norm: float = 1.0,
    groups: dict | None = None,
    squared_norms: Sequence[tf.Tensor | None] | None = None,
) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
    """Clips final gradients with one method and reports the norms it measured.

    With ``groups``, variables whose path matches a pattern are clipped with that pattern's
    threshold (for ``"global_norm"``, by the global norm of their group alone); all other
    variables use ``clip_norm``. ``method=None`` changes nothing but still measures.

    Args:
      grads: the gradients, one per variable.
      variables: the variables (used for names and, for ``"adaptive"``, weight norms).
      method: ``"global_norm"`` (default), ``"per_variable_norm"``, ``"value"``,
        ``"adaptive"`` (``clip_norm`` is then the ratio of gradient to weight norm), or None.
      clip_norm: the default threshold.
      groups: optional dict of variable-path pattern to threshold, e.g.
        ``{"recurrent_kernel": 0.5}``.
      squared_norms: each gradient's float32 sum of squares (None for a None gradient) when
        the caller has them: the norms before and after clipping are then derived from them
        instead of reading every gradient again (with global and per-variable norm clipping,
        the gradients are then read once, to be scaled).

    Returns:
      ``(clipped, stats)`` where ``stats`` holds float32 scalars
      ``grad_norm_before_clip``, ``grad_norm_after_clip`` and ``clipped`` (1.0 when any
      gradient was changed).
    """
    grads = list(grads)
    if squared_norms is None:
        squared_norms = [
            None if g is None else tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in grads
        ]
    before = _root_of_sum(squared_norms)
    if method is None:
        return grads, {
            "grad_norm_before_clip": before,
            "grad_norm_after_clip": before,
            "clipped": tf.constant(0.0),
        }
    clipped = list(grads)
    after_squares = list(squared_norms)  # exact for the two norm methods, recomputed otherwise
    flags = []
    for _, threshold, indices in group_variables(variables, groups):
        threshold = clip_norm if threshold is None else threshold
        part = [grads[i] for i in indices]
        if method == "global_norm":
            norm = _root_of_sum([squared_norms[i] for i in indices])
            new, _ = clip_by_global_norm(part, threshold, norm=norm)
            flags.append(norm > threshold)
            scale = _scale(norm, threshold)
            for i in indices:
                if squared_norms[i] is not None:
                    after_squares[i] = squared_norms[i] * tf.square(scale)
        elif method == "per_variable_norm":
            known = [
                None if squared_norms[i] is None else tf.sqrt(squared_norms[i]) for i in indices
            ]
            new, norms = clip_by_per_variable_norm(part, threshold, norms=known)
            flags.append(tf.reduce_any(tf.stack(norms) > threshold))
            for i, norm in zip(indices, norms):
                if squared_norms[i] is not None:
                    scale = _scale(norm, threshold)
                    after_squares[i] = squared_norms[i] * tf.square(scale)
        elif method == "value":
            new = clip_by_value(part, threshold)
            flags.append(
                tf.reduce_any(
                    tf.stack([tf.reduce_any(tf.abs(g) > threshold) for g in part if g is not None])
                )
            )
        else:
            new, flag = clip_adaptive(part, [variables[i] for i in indices], threshold)
            flags.append(flag)
        for i, g in zip(indices, new):
            clipped[i] = g
            if method in ("value", "adaptive") and g is not None:
                after_squares[i] = tf.reduce_sum(tf.square(tf.cast(g, tf.float32)))
    any_clipped = tf.reduce_any(tf.stack(flags)) if flags else tf.constant(False)
    return clipped, {
        "grad_norm_before_clip": before,
        "grad_norm_after_clip": _root_of_sum(after_squares),
        "clipped": tf.cast(any_clipped, tf.float32),
    }


def _scale(norm: tf.Tensor, max_norm: float) -> tf.Tensor:
    """The factor that brings a tensor of norm ``norm`` down to at most ``max_norm``."""
    return tf.minimum(1.0, max_norm / tf.maximum(norm, 1e-30))


def _root_of_sum(squares: Sequence[tf.Tensor | None]) -> tf.Tensor:
    present = [s for s in squares if s is not None]
    return tf.sqrt(tf.add_n(present)) if present else tf.constant(0.0)
