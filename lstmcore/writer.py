"""TensorBoard output of a run: scalars written in batches, HParams, custom-scalars layout, text.

The training step returns tensors; the host loop collects them for a while and hands them here
as NumPy arrays, ``[K]`` steps by ``[K, N]`` values. One compiled call writes the whole batch,
so per-step logging costs one dispatch per flush instead of one per value.
"""

from __future__ import annotations

import os
import re
import struct

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
from tensorboard.plugins.hparams import api as hparams_api
from tensorboard.plugins.scalar import metadata as scalar_metadata


class RunWriter:
    """Writes one run's TensorBoard events into ``run_dir``.

    Args:
      run_dir: the run's directory (created if missing).
      scalar_tags: the tags of the per-step scalars, in the column order of
        :meth:`write_scalars`.
    """

    def __init__(self, run_dir: str, scalar_tags: list[str]):
        self.run_dir = run_dir
        self.scalar_tags = list(scalar_tags)
        self._writer = tf.summary.create_file_writer(run_dir)
        tags = self.scalar_tags
        writer = self._writer
        metadata = scalar_metadata.create_summary_metadata(
            display_name="", description=""
        ).SerializeToString()

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.int64),
                tf.TensorSpec([None, len(tags)], tf.float32),
            ],
            autograph=False,
        )
        def write_batch(steps, values):
            with writer.as_default():

                def body(k):
                    # tf.summary.write, unlike tf.summary.scalar, does not prefix the loop's
                    # name scope ("while/") to the tag.
                    for column, tag in enumerate(tags):
                        tf.summary.write(tag, values[k, column], step=steps[k], metadata=metadata)
                    return (k + 1,)

                tf.while_loop(lambda k: k < tf.shape(steps)[0], body, (tf.constant(0),))
            return tf.constant(True)

        self._write_batch = write_batch

    def write_scalars(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Writes ``values[k, j]`` under ``scalar_tags[j]`` at step ``steps[k]``."""
        if len(steps):
            self._write_batch(
                np.asarray(steps, np.int64), np.asarray(values, np.float32).reshape(len(steps), -1)
            )

    def write_scalar(self, tag: str, value: float, step: int) -> None:
        """Writes one scalar (validation loss, throughput): an occasional value."""
        with self._writer.as_default():
            tf.summary.scalar(tag, float(value), step=int(step))

    def write_image(self, tag: str, image, step: int) -> None:
        """Writes a ``[1, height, width, channels]`` uint8 image."""
        with self._writer.as_default():
            tf.summary.image(tag, image, step=int(step))

    def write_text(self, tag: str, text: str, step: int) -> None:
        """Writes Markdown text (shown in TensorBoard's Text tab)."""
        with self._writer.as_default():
            tf.summary.text(tag, text, step=int(step))

    def write_hparams(self, hparams: dict, metric_tags: list[str]) -> None:
        """Records the run's hyperparameters and the metrics to show beside them (HParams)."""
        clean = {key: _hparam_value(value) for key, value in hparams.items()}
        with self._writer.as_default():
            hparams_api.hparams_config(
                hparams=[hparams_api.HParam(key) for key in clean],
                metrics=[hparams_api.Metric(tag) for tag in metric_tags],
            )
            hparams_api.hparams(clean)

    def write_layout(self, categories: list[tuple[str, list[tuple[str, list[str]]]]]) -> None:
        """Writes a custom-scalars layout: ``[(category, [(chart title, [tag regex])])]``."""
        layout = layout_pb2.Layout(
            category=[
                layout_pb2.Category(
                    title=title,
                    chart=[
                        layout_pb2.Chart(
                            title=chart_title,
                            multiline=layout_pb2.MultilineChartContent(tag=regexes),
                        )
                        for chart_title, regexes in charts
                    ],
                )
                for title, charts in categories
            ]
        )
        summary = custom_scalar_summary.pb(layout)
        with self._writer.as_default():
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=0)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def drop_events_after(run_dir: str, step: int, per_step_tags: set[str]) -> int:
    """Rewrites a run's event files without what a resumed run will write again.

    A run killed after its last checkpoint has logged steps that the resumed run repeats.
    Events of ``per_step_tags`` at ``step`` and later, and all other events after ``step``,
    are dropped, so every chart shows each step once. The kept events go to a new file
    first; the old files (which lstmcore wrote) are removed only after it is closed, and
    exact copies of an event (what a resume killed between the two leaves) are dropped too.
    A file cut short by the kill is read up to its last whole record.

    Args:
      run_dir: the run directory.
      step: the step the run resumes from (the optimizer's ``iterations``).
      per_step_tags: tags written once per optimizer step, indexed by the update's step.

    Returns:
      The number of events dropped.
    """
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    old_files = sorted(
        os.path.join(run_dir, name)
        for name in os.listdir(run_dir)
        if "tfevents" in name and os.path.isfile(os.path.join(run_dir, name))
    )
    kept, dropped, seen = [], 0, set()
    for path in old_files:
        # read_events stops at a record cut short by the kill: everything before it is kept.
        for event in read_events(path):
            tags = {value.tag for value in event.summary.value}
            limit = step if tags & per_step_tags else step + 1
            # A copy of an event already kept: a resume killed after writing the new file
            # and before removing the old ones left both.
            copy = (event.step, event.summary.SerializeToString(deterministic=True))
            if event.HasField("summary") and (event.step >= limit or copy in seen):
                dropped += 1
            else:
                kept.append(event)
                if event.HasField("summary"):
                    seen.add(copy)
    if not dropped:
        return 0
    writer = EventFileWriter(run_dir, filename_suffix=".resumed")
    for event in kept:
        if not event.HasField("file_version"):
            writer.add_event(event_pb2.Event.FromString(event.SerializeToString()))
    writer.close()
    for path in old_files:
        os.remove(path)
    return dropped


MAX_RECORD_BYTES = 16 * 2**20  # an event lstmcore writes is a few kB; images stay far below
MAX_TENSOR_ELEMENTS = 2**20


def read_events(path: str, *, max_record_bytes: int = MAX_RECORD_BYTES):
    """Yields the events of a TensorBoard event file, reading at most what the file holds.

    A file lstmcore did not write is untrusted: its TFRecord framing (an 8-byte length, a
    4-byte checksum of it, the record, a 4-byte checksum) is parsed here, a record that
    claims more bytes than ``max_record_bytes`` is skipped unread, and the file ends at the
    first record cut short (a run killed while writing), so reading never allocates more
    than the file's size. Checksums are not verified.

    Args:
      path: the event file.
      max_record_bytes: records longer than this are skipped.

    Yields:
      ``tensorboard.compat.proto.event_pb2.Event`` objects; records that do not parse are
      skipped.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            if length > size - f.tell() - 4:
                return
            if length > max_record_bytes:
                f.seek(length + 4, os.SEEK_CUR)
                continue
            record = f.read(length)
            f.read(4)
            try:
                yield event_pb2.Event.FromString(record)
            except Exception:  # noqa: BLE001, S112 - a damaged record is skipped
                continue


def tensor_elements(tensor) -> int:
    """The number of elements a ``TensorProto`` claims, read from its shape (not its data)."""
    count = 1
    for dim in tensor.tensor_shape.dim:
        count *= max(int(dim.size), 0)
    return count


def _hparam_value(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    if value is None:
        return "None"
    return str(value)


def tag_regex(tag: str) -> str:
    """Returns a regular expression matching exactly ``tag``."""
    return "^" + re.escape(tag) + "$"


def layout(series) -> list:
    recurrent = sorted({s.tag.rsplit("/", 2)[0] for s in series if s.gate is not None})
    charts_by_layer = []
    for prefix in recurrent:
        for part in ("kernel", "recurrent_kernel", "bias"):
            charts_by_layer.append(
                (f"{prefix.split('/', 1)[1]} {part} by gate", [f"^{prefix}/{part}/[a-z]$"])
            )
    return [
        (
            "lstmcore: gradients",
            [
                (
                    "global gradient norm (before and after clipping)",
                    ["^grad_norm/global_(before|after)_clip$"],
                ),
                ("clipping", ["^clip/"]),
                *charts_by_layer,
                ("per-variable gradient norms", ["^grad_norm/(?!global).*[^/]{2,}$"]),
            ],
        ),
        (
            "lstmcore: training",
            [
                ("loss", [tag_regex("train/loss"), tag_regex("val/loss")]),
                ("learning rate", [tag_regex("train/learning_rate")]),
                ("throughput and faults", ["^train/(steps_per_second|skipped_nonfinite)$"]),
            ],
        ),
    ]


def kernels_markdown(kernels) -> str:
    if not kernels:
        return "No recurrent layers."
    lines = ["| layer | class | cuDNN | why |", "|---|---|---|---|"]
    lines += [
        f"| {k['layer']} | {k['layer_class']} | {k['uses_cudnn']} | {k['reason']} |"
        for k in kernels
    ]
    return "\n".join(lines)
