"""Reads TensorBoard event files in tests without TensorFlow: TFRecord framing read directly
(8-byte length, 4-byte CRC, data, 4-byte CRC) and parsed with TensorBoard's protos."""

from __future__ import annotations

from pathlib import Path


def events(folder: Path):
    """Every event in a folder's event files."""
    from tensorboard.compat.proto import event_pb2

    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at + 12 <= len(data):
            length = int.from_bytes(data[at:at + 8], "little")
            yield event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4


def texts(folder: Path, tag: str = "tunecluster/training") -> list[tuple[int, str]]:
    """(step, text) of the folder's text summaries with `tag`."""
    return [(e.step, v.tensor.string_val[0].decode()) for e in events(folder) for v in e.summary.value
            if v.tag == tag and v.tensor.string_val]
