"""Gradient clipping: pure functions, and Clipper objects that apply them and report the norms.

Every clipper returns the clipped gradients together with the norms it measured, because the
norm before clipping is the number a user needs to see (Keras's ``clipnorm`` hides it and clips
each tensor separately, before gradients are aggregated across replicas). A :class:`Clipper`
(:class:`GlobalNorm`, :class:`PerVariable`, :class:`Value`, :class:`Adaptive`, and
:class:`PerGroup`, which gives groups of variables chosen by path pattern their own clipper,
as optax's ``partition``) is configured once and called in the training step:
``clipper(grads, variables) -> (clipped, stats)``. :func:`get` turns ``train``'s ``clip``,
``clip_norm`` and ``clip_groups`` options into one; names are looked up in :data:`CLIPPERS`,
where users register their own. Clipping runs on final gradients: under a distribution
strategy, after cross-replica aggregation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import tensorflow as tf

from lstmcore import config
from lstmcore.config import Registry
from lstmcore.errors import ConfigError


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
        weight = p if isinstance(p, tf.Variable) else getattr(p, "value", p)
        max_norm = clipping * tf.maximum(unitwise_norm(weight), eps)
        grad_norm = unitwise_norm(g)
        trigger = grad_norm > max_norm
        scale = tf.where(trigger, max_norm / tf.maximum(grad_norm, 1e-30), 1.0)
        clipped.append(g * tf.cast(scale, g.dtype))
        flags.append(tf.reduce_any(trigger))
    any_clipped = tf.reduce_any(tf.stack(flags)) if flags else tf.constant(False)
    return clipped, any_clipped


class Clipper:
    """A gradient clipper: ``clipper(grads, variables) -> (clipped, stats)``.

    Subclasses implement :meth:`clip` for the gradients they are given; the base class
    measures the global norm before and after and returns the statistics every clipper
    reports, as float32 scalars: ``grad_norm_before_clip``, ``grad_norm_after_clip`` and
    ``clipped`` (1.0 when any gradient was changed). Clippers are configured once and applied
    at every step inside the compiled step, as optax's gradient transformations; a subclass
    registered in :data:`CLIPPERS` is accepted by name wherever a clipping name is (the
    factory is called with the threshold: ``factory(clip_norm)``).
    """

    name = "clipper"

    def __call__(self, grads, variables, squared_norms=None):
        """Clips ``grads`` (one per variable) and reports the norms before and after.

        Args:
          grads: the final gradients (after cross-replica aggregation), ``None`` allowed.
          variables: the variables, in the same order.
          squared_norms: each gradient's float32 sum of squares (``None`` for a ``None``
            gradient) when the caller has them, so that the norms are not measured twice.

        Returns:
          ``(clipped, stats)``: a list of gradients and a dict of float32 scalars.
        """
        grads = list(grads)
        variables = list(variables)
        if squared_norms is None:
            squared_norms = _squares(grads)
        squared_norms = list(squared_norms)
        clipped, after_squares, flag = self.clip(grads, variables, squared_norms)
        if after_squares is None:
            after_squares = _squares(clipped)
        return list(clipped), {
            "grad_norm_before_clip": _root_of_sum(squared_norms),
            "grad_norm_after_clip": _root_of_sum(after_squares),
            "clipped": tf.cast(flag, tf.float32),
        }

    def clip(self, grads, variables, squared_norms):
        """Returns ``(clipped, squares after or None, any clipped: a bool or float scalar)``.

        ``squares after`` may be None: the base class then measures the clipped gradients.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement clip()")

    def check(self, variables) -> None:
        """Raises ConfigError when this clipper cannot work on these variables."""
        del variables

    def get_config(self) -> dict:
        """A JSON-able description (for the run manifest and ``hparams``)."""
        return {"name": self.name}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({options})"


CLIPPERS = Registry("clip")


class NoClip(Clipper):
    """Changes nothing and still measures the norm (``clip=None``)."""

    name = "none"

    def clip(self, grads, variables, squared_norms):
        return grads, squared_norms, tf.constant(False)


@CLIPPERS.register("global_norm")
class GlobalNorm(Clipper):
    """Scales all gradients together so that their global norm is at most ``max_norm``.

    See :func:`clip_by_global_norm`: the direction of the update is kept.
    """

    name = "global_norm"

    def __init__(self, max_norm: float = 1.0):
        self.max_norm = config.number("clip_norm", max_norm, positive=True)

    def clip(self, grads, variables, squared_norms):
        norm = _root_of_sum(squared_norms)
        clipped, _ = clip_by_global_norm(grads, self.max_norm, norm=norm)
        scale = tf.square(_scale(norm, self.max_norm))
        after = [None if s is None else s * scale for s in squared_norms]
        return clipped, after, norm > self.max_norm

    def get_config(self):
        return {"name": self.name, "max_norm": self.max_norm}


@CLIPPERS.register("per_variable_norm")
class PerVariable(Clipper):
    """Scales each gradient tensor separately to a norm of at most ``max_norm``.

    What Keras's ``clipnorm`` does (see :func:`clip_by_per_variable_norm`).
    """

    name = "per_variable_norm"

    def __init__(self, max_norm: float = 1.0):
        self.max_norm = config.number("clip_norm", max_norm, positive=True)

    def clip(self, grads, variables, squared_norms):
        known = [None if s is None else tf.sqrt(s) for s in squared_norms]
        clipped, norms = clip_by_per_variable_norm(grads, self.max_norm, norms=known)
        after = [
            None if s is None else s * tf.square(_scale(n, self.max_norm))
            for s, n in zip(squared_norms, norms)
        ]
        flag = tf.reduce_any(tf.stack(norms) > self.max_norm) if norms else tf.constant(False)
        return clipped, after, flag

    def get_config(self):
        return {"name": self.name, "max_norm": self.max_norm}


@CLIPPERS.register("value")
class Value(Clipper):
    """Clips every gradient element to ``[-max_value, max_value]`` (see :func:`clip_by_value`)."""

    name = "value"

    def __init__(self, max_value: float = 1.0):
        self.max_value = config.number("clip_norm", max_value, positive=True)

    def clip(self, grads, variables, squared_norms):
        present = [g for g in grads if g is not None]
        flags = [tf.reduce_any(tf.abs(g) > self.max_value) for g in present]
        flag = tf.reduce_any(tf.stack(flags)) if flags else tf.constant(False)
        return clip_by_value(grads, self.max_value), None, flag

    def get_config(self):
        return {"name": self.name, "max_value": self.max_value}


@CLIPPERS.register("adaptive")
class Adaptive(Clipper):
    """Adaptive gradient clipping, each unit relative to its weight norm (:func:`clip_adaptive`).

    ``clipping`` is the largest ratio of a unit's gradient norm to its weight norm.
    """

    name = "adaptive"

    def __init__(self, clipping: float = 0.01, eps: float = 1e-3):
        self.clipping = config.number("clip_norm", clipping, positive=True)
        self.eps = config.number("eps", eps, positive=True)

    def clip(self, grads, variables, squared_norms):
        clipped, flag = clip_adaptive(grads, variables, self.clipping, self.eps)
        return clipped, None, flag

    def get_config(self):
        return {"name": self.name, "clipping": self.clipping, "eps": self.eps}


class PerGroup(Clipper):
    """Clips groups of variables, chosen by path pattern, each with its own clipper.

    As optax's ``partition``: every variable goes to the first group whose pattern (a regular
    expression) is found in its path (``variable.path``, e.g. ``"lstm/lstm_cell/
    recurrent_kernel"``); the others go to ``default`` (None: measured, not clipped). A
    ``GlobalNorm`` in a group clips by the global norm of that group alone.

    Args:
      groups: a non-empty dict of pattern to Clipper (order matters: first match wins).
      default: the Clipper for the variables no pattern matches, or None.
    """

    name = "per_group"

    def __init__(self, groups: dict, default: Clipper | None = None):
        if not isinstance(groups, dict) or not groups:
            raise ConfigError(
                "clip_groups must be a non-empty dict of variable-name pattern to threshold, "
                f"e.g. {{'recurrent_kernel': 0.5}}; got {groups!r}"
            )
        for pattern, clipper in groups.items():
            _check_pattern(pattern)
            if not isinstance(clipper, Clipper):
                raise ConfigError(
                    f"clip_groups[{pattern!r}] must be a lstmcore.clipping.Clipper; got {clipper!r}"
                )
        if default is not None and not isinstance(default, Clipper):
            raise ConfigError(f"default must be a Clipper or None; got {default!r}")
        self.groups = dict(groups)
        self.default = default or NoClip()

    def partition(self, variables) -> list[tuple[str, Clipper, list[int]]]:
        """``(pattern or "default", clipper, variable indices)`` for each non-empty group."""
        assigned: dict[str, list[int]] = {pattern: [] for pattern in self.groups}
        rest = []
        for index, variable in enumerate(variables):
            path = getattr(variable, "path", None) or variable.name
            match = next((p for p in self.groups if re.search(p, path)), None)
            (rest if match is None else assigned[match]).append(index)
        parts = [(p, self.groups[p], idx) for p, idx in assigned.items() if idx]
        if rest:
            parts.append(("default", self.default, rest))
        return parts

    def clip(self, grads, variables, squared_norms):
        clipped, after, flags = list(grads), list(squared_norms), []
        for _, clipper, indices in self.partition(variables):
            part, stats = clipper(
                [grads[i] for i in indices],
                [variables[i] for i in indices],
                squared_norms=[squared_norms[i] for i in indices],
            )
            for slot, i in enumerate(indices):
                clipped[i] = part[slot]
                after[i] = None
            # One entry carries the group's squared norm after clipping; the sum is the same.
            after[indices[0]] = tf.square(stats["grad_norm_after_clip"])
            flags.append(stats["clipped"] > 0)
        flag = tf.reduce_any(tf.stack(flags)) if flags else tf.constant(False)
        return clipped, after, flag

    def check(self, variables) -> None:
        variables = list(variables)
        matched = {pattern for pattern, _, _ in self.partition(variables)}
        empty = [pattern for pattern in self.groups if pattern not in matched]
        if empty:
            paths = ", ".join(getattr(v, "path", None) or v.name for v in variables)
            raise ConfigError(
                f"clip_groups pattern(s) {empty} match no trainable variable (or only ones an "
                f"earlier pattern took); patterns are searched in the variable paths: {paths}"
            )
        for pattern, clipper, indices in self.partition(variables):
            clipper.check([variables[i] for i in indices])

    def get_config(self):
        return {
            "name": self.name,
            "groups": {p: c.get_config() for p, c in self.groups.items()},
            "default": self.default.get_config(),
        }


def get(clip, clip_norm=1.0, clip_groups=None) -> Clipper:
    """The Clipper for ``train``'s ``clip``, ``clip_norm`` and ``clip_groups`` options.

    Args:
      clip: a name registered in :data:`CLIPPERS` (``"global_norm"``,
        ``"per_variable_norm"``, ``"value"``, ``"adaptive"``, or one registered by the user),
        None (measure, never clip), or a :class:`Clipper` (returned as is).
      clip_norm: the threshold given to the named clipper's factory.
      clip_groups: None, or a dict of variable-path pattern to threshold: each group gets its
        own clipper of the same kind with that threshold (:class:`PerGroup`), the other
        variables use ``clip_norm``.

    Returns:
      A Clipper.

    Raises:
      ConfigError: for an unknown name, a threshold that is not a finite number > 0, a
        pattern that is not a regular expression, or ``clip_groups`` with a Clipper object.
    """
    if isinstance(clip, Clipper):
        if clip_groups is not None:
            raise ConfigError(
                "clip_groups applies to a clipping name; with a Clipper object, wrap it "
                f"yourself: clipping.PerGroup({{pattern: clipper}}, default=...); got "
                f"clip={clip!r}, clip_groups={clip_groups!r}"
            )
        return clip
    if clip is None:
        return NoClip()
    if not isinstance(clip, str):
        raise ConfigError(
            f"clip must be one of {_names()}, None or a lstmcore.clipping.Clipper; got {clip!r}"
        )
    factory = CLIPPERS.get(clip, option="clip")
    default = _made(factory, clip, clip_norm, "clip_norm")
    if clip_groups is None:
        return default
    if not isinstance(clip_groups, dict) or not clip_groups:
        raise ConfigError(
            "clip_groups must be a non-empty dict of variable-name pattern to threshold, "
            f"e.g. {{'recurrent_kernel': 0.5}}; got {clip_groups!r}"
        )
    groups = {}
    for pattern, threshold in clip_groups.items():
        _check_pattern(pattern)
        groups[pattern] = _made(factory, clip, threshold, f"clip_groups[{pattern!r}]")
    return PerGroup(groups, default=default)


def _made(factory, clip, threshold, option) -> Clipper:
    clipper = factory(config.number(option, threshold, positive=True))
    if not isinstance(clipper, Clipper):
        raise ConfigError(
            f"the factory registered as clip={clip!r} returned {clipper!r}, not a "
            "lstmcore.clipping.Clipper"
        )
    return clipper


def _names() -> str:
    return ", ".join(repr(name) for name in CLIPPERS.names())


def _check_pattern(pattern) -> None:
    try:
        re.compile(pattern)
    except (re.error, TypeError) as error:
        raise ConfigError(
            f"clip_groups key {pattern!r} is not a regular expression: {error}"
        ) from None


def check_clip_options(method, clip_norm, groups) -> None:
    """Raises ``ConfigError`` for a clipping configuration that cannot work.

    Kept for earlier callers: :func:`get` does the same checks and returns the Clipper.

    Args:
      method: a name in :data:`CLIPPERS`, a Clipper, or ``None``.
      clip_norm: the threshold, a finite number ``> 0`` when ``method`` is set.
      groups: ``None`` or a dict of variable-name pattern (a regular expression searched in
        the variable's path) to a threshold.
    """
    if method is None:
        return
    get(method, clip_norm, groups)


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
    method: str | Clipper | None = "global_norm",
    clip_norm: float = 1.0,
    groups: dict | None = None,
    squared_norms: Sequence[tf.Tensor | None] | None = None,
) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
    """Clips final gradients with one method and reports the norms it measured.

    The function form of :func:`get`: ``get(method, clip_norm, groups)(grads, variables,
    squared_norms)``. With ``groups``, variables whose path matches a pattern are clipped with
    that pattern's threshold (for ``"global_norm"``, by the global norm of their group alone);
    all other variables use ``clip_norm``. ``method=None`` changes nothing but still measures.

    Args:
      grads: the gradients, one per variable.
      variables: the variables (used for names and, for ``"adaptive"``, weight norms).
      method: a name in :data:`CLIPPERS` (``"global_norm"`` by default), a Clipper, or None.
      clip_norm: the default threshold.
      groups: optional dict of variable-path pattern to threshold, e.g.
        ``{"recurrent_kernel": 0.5}``.
      squared_norms: each gradient's float32 sum of squares (None for a None gradient) when
        the caller has them: the norms before and after clipping are then derived from them
        instead of reading every gradient again.

    Returns:
      ``(clipped, stats)`` where ``stats`` holds float32 scalars
      ``grad_norm_before_clip``, ``grad_norm_after_clip`` and ``clipped`` (1.0 when any
      gradient was changed).
    """
    clipper = get(method, clip_norm, groups if method is not None else None)
    return clipper(grads, variables, squared_norms=squared_norms)


def _scale(norm: tf.Tensor, max_norm: float) -> tf.Tensor:
    """The factor that brings a tensor of norm ``norm`` down to at most ``max_norm``."""
    return tf.minimum(1.0, max_norm / tf.maximum(norm, 1e-30))


def _root_of_sum(squares: Sequence[tf.Tensor | None]) -> tf.Tensor:
    present = [s for s in squares if s is not None]
    return tf.sqrt(tf.add_n(present)) if present else tf.constant(0.0)


def _squares(grads) -> list:
    return [None if g is None else tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in grads]


# The built-in names, in registration order (kept for earlier callers; CLIPPERS is the source).
METHODS = CLIPPERS.names()
