"""A chief's py-spy profile read two ways, for `chief_scale.py`.

- `summary()`: the share of samples per function anywhere on the stack (inclusive) and as the
  innermost frame (self), the top few of each.
- `cpu_by_rpc()`: the chief's CPU per call by RPC type. py-spy samples with `--gil` record only
  the thread holding the GIL, so a sample is a slice of the chief's Python CPU; a sample belongs to
  the RPC whose handler (a frame named like the call: `Heartbeat`, `WorkDone`, `CreateTrial` ...,
  or qualified by its class as py-spy 0.4 writes it: `ControlService.WorkDone`) is on its stack,
  and the rest (gRPC's dispatch, the state writer, garbage collection) is `other`.
  CPU of RPC X per call = the chief's CPU over the window x X's share of the samples / X's calls.
  The split is an estimate: CPU spent outside Python (gRPC's C threads, the Bayesian model's
  process) is spread over the types in proportion to their Python samples.
"""

from __future__ import annotations

import re
from pathlib import Path

# one frame of py-spy's raw output: "function (path/to/file.py:line)", the line number optional
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame(text: str) -> str:
    """'function file.py' (the file without its folder) for one raw frame."""
    match = _FRAME.match(text)
    if match is None:
        return text
    return f"{match['function']} {match['file'].rsplit('/', 1)[-1]}"


def _stacks(path: Path):
    """(frames outermost first, as 'function file', samples) per line of py-spy's raw output."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        yield [_frame(f) for f in stack.split(";")], int(count)


def _handler_name(frame: str) -> str:
    """The bare function name of a frame: `ControlService.WorkDone control_service.py` -> `WorkDone`."""
    return frame.split(" ")[0].rsplit(".", 1)[-1]


def summary(path: Path, top: int = 15) -> dict:
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for frames, n in _stacks(path):
        total += n
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + n
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + n
    share = lambda d: {k: round(v / total, 3) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]}  # noqa: E731
    return {"samples": total, "inclusive": share(inclusive), "self": share(own)} if total else {}


def cpu_by_rpc(path: Path, calls: dict[str, int], cpu_seconds: float) -> dict:
    """{rpc: {share, calls, cpu_ms_per_call}} plus `other` (samples under no RPC handler)."""
    samples = {name: 0 for name in calls}
    other = total = 0
    for frames, n in _stacks(path):
        total += n
        handler = next((_handler_name(f) for f in frames if _handler_name(f) in samples), None)
        if handler is None:
            other += n
        else:
            samples[handler] += n
    if not total:
        return {}
    out = {}
    for name, n in samples.items():
        share = n / total
        out[name] = {"share": round(share, 4), "calls": calls[name],
                     "cpu_ms_per_call": round(1000 * cpu_seconds * share / calls[name], 3) if calls[name] else None}
    out["other"] = {"share": round(other / total, 4), "calls": None, "cpu_ms_per_call": None}
    return out
