"""Files onto an experiment's volume (`tunecluster upload`), streamed, checksummed and resumable.

- The claim: the experiment's (`<name>-shared`, or `existing_claim`). Before `up` it does not exist
  yet; given the spec, upload creates it exactly as `up` renders it (same labels, so `down`
  deletes it and `up` adopts it). A claim upload made is deleted again when the upload fails
  before any byte was written (nothing half-made).
- Room: the files' sizes are compared with the claim's capacity before anything is created, then
  with the free bytes the helper pod sees on the volume; either failing is one line.
- Each file goes to `<mount>/<to>/<name>.part` and is renamed to its name only once the pod's
  sha256 of the whole file equals this machine's, so a worker never reads half a file.
- Resume: a file already there with the same sha256 is skipped; a `.part` left by an interrupted
  upload whose bytes equal the local file's first bytes (sha256 of that prefix) is continued from
  its end; anything else starts over.
- Bytes travel as binary websocket frames of the exec stream (`exec_stream.py`); the pod reads
  exactly the announced count, so neither side holds a file in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from tunecluster.backends.kubernetes.apply import apply_objects
from tunecluster.backends.kubernetes.client import Cluster, explain
from tunecluster.backends.kubernetes.exec_stream import EndedEarly, ExecStream, run_command
from tunecluster.backends.kubernetes import pod_side
from tunecluster.backends.kubernetes.helper_pod import pod_command, running_helper
from tunecluster.backends.kubernetes.render import SHARED_MOUNT, Names, render
from tunecluster.backends.transfer_progress import NoProgress, TransferProgress
from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.tuning.spec import Experiment

READ_CHUNK = 1 << 20
DEFAULT_DIR = "data"


@dataclass(frozen=True)
class Item:
    """One local file and its name under the target folder on the volume."""

    local: Path
    name: str
    size: int


@dataclass(frozen=True)
class Step:
    """What to do with one file: 'skip' (same sha256 there), 'resume' from `offset`, or 'send'."""

    action: str
    offset: int = 0


def items_of(paths: Iterable[Path]) -> list[Item]:
    """The files to send: each file by its name, each folder's files under the folder's name."""
    found: dict[str, Item] = {}
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            pairs = [(p, posixpath.join(path.resolve().name, *p.relative_to(path).parts)) for p in files]
        elif path.is_file():
            pairs = [(path, path.name)]
        else:
            raise UsageError(f"{path}: no such file or folder on this machine")
        for local, name in pairs:
            if name.endswith(".part"):
                raise UsageError(f"{local}: names ending in .part are kept for unfinished uploads; rename it")
            if name in found:
                raise UsageError(f"two files would land at {name!r} on the volume ({found[name].local} and {local}); "
                                 "upload them separately with different --to folders")
            found[name] = Item(local, name, local.stat().st_size)
    if not found:
        raise UsageError("nothing to upload: the folders given hold no files")
    return list(found.values())


def target_dir(to: str) -> str:
    """The folder on the volume, as the pods see it: `data` -> /shared/data; /shared/x -> /shared/x."""
    path = posixpath.normpath(to if to.startswith("/") else posixpath.join(SHARED_MOUNT, to))
    if not (path == SHARED_MOUNT or path.startswith(SHARED_MOUNT + "/")):
        raise UsageError(f"--to {to}: the volume is mounted at {SHARED_MOUNT} in the pods; give a folder under "
                         f"it (e.g. {SHARED_MOUNT}/data) or relative to it (data)")
    return path


def sha256_of(path: Path, limit: Optional[int] = None, on_bytes: Callable[[int], None] = lambda n: None) -> str:
    """sha256 of a local file (or its first `limit` bytes), read in 1 MiB pieces: the pod's own
    function (`pod_side.file_sha256`), so both ends hash alike."""
    return pod_side.file_sha256(path, limit, on_bytes)


def decide(item: Item, remote: dict, local_sha: Callable[[Optional[int]], str]) -> Step:
    """Skip, resume or send one file, from what the pod found (`pod_side.stat`) and the local
    file's sha256 (`local_sha(None)` whole, `local_sha(n)` of the first n bytes): hashes only
    where sizes make a match possible."""
    if remote.get("size") == item.size and remote.get("sha256") and remote["sha256"] == local_sha(None):
        return Step("skip")
    part = remote.get("part", -1)
    if 0 < part <= item.size and remote.get("part_sha256") and remote["part_sha256"] == local_sha(part):
        return Step("resume", part)
    return Step("send")


def needed_bytes(items: list[Item], steps: list[Step]) -> int:
    return sum(item.size - step.offset for item, step in zip(items, steps) if step.action != "skip")


def human(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def check_room(needed: int, capacity: Optional[int], where: str, advice: str) -> None:
    """One line when `needed` bytes do not fit in `capacity` (None: unknown)."""
    if capacity is not None and needed > capacity:
        raise UsageError(f"the files to upload need {human(needed)} but {where} {human(capacity)}; {advice}")


ROOM_ADVICE = "raise cluster.kubernetes.storage_size (before the claim exists) or expand the claim, or upload less"


# --- the claim ----------------------------------------------------------------------------------
def claim_object(spec: Experiment, namespace: str) -> dict:
    """The claim exactly as `up` renders it (data.csv left out: it may be the very file uploaded)."""
    bare = spec.model_copy(deep=True)
    bare.data.csv = None
    found = [o for o in render(bare, namespace=namespace) if o["kind"] == "PersistentVolumeClaim"]
    if not found:
        raise UsageError("the spec names cluster.kubernetes.existing_claim but that claim does not exist in "
                         f"namespace {namespace}; create it first")
    return found[0]


def read_claim(cluster: Cluster, name: str):
    from kubernetes.client.exceptions import ApiException

    try:
        return cluster.core.read_namespaced_persistent_volume_claim(name, cluster.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise explain(exc, f"reading the volume claim {name}") from None
    except Exception as exc:
        raise explain(exc, f"reading the volume claim {name}") from None


def claim_capacity(claim) -> Optional[int]:
    from kubernetes.utils.quantity import parse_quantity

    size = (claim.status.capacity or {}).get("storage") if claim.status else None
    size = size or ((claim.spec.resources.requests or {}).get("storage") if claim.spec.resources else None)
    return int(parse_quantity(size)) if size else None


# --- the upload ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    item: Item
    step: Step
    path: str
    sha256: str
    seconds: float


def upload(cluster: Cluster, spec: Experiment, paths: list[Path], *, to: str = DEFAULT_DIR,
           create_claim: bool = True, progress: Optional[TransferProgress] = None,
           say: Callable[[str], None] = lambda line: None) -> list[Outcome]:
    """Send `paths` to `<mount>/<to>` on the experiment's volume; return what happened per file."""
    from kubernetes.utils.quantity import parse_quantity

    progress = progress or NoProgress()
    items = items_of(paths)
    directory = target_dir(to)
    total = sum(item.size for item in items)
    claim_name = spec.cluster.kubernetes.existing_claim or Names(spec.name).claim
    claim = read_claim(cluster, claim_name)
    made_claim = False
    if claim is None:
        if spec.cluster.kubernetes.existing_claim or not create_claim:
            raise UsageError(f"the volume claim {claim_name} does not exist in namespace {cluster.namespace}; "
                             "give the spec (-f tunecluster.yaml) so upload can create it, or run `up` first")
        obj = claim_object(spec, cluster.namespace)
        check_room(total, int(parse_quantity(obj["spec"]["resources"]["requests"]["storage"])),
                   f"the claim {claim_name} made from the spec (storage_size) would hold", ROOM_ADVICE)
        apply_objects(cluster, [obj])
        made_claim = True
        say(f"created the volume claim {claim_name} ({spec.cluster.kubernetes.storage_size}, "
            f"{spec.cluster.kubernetes.access_mode}); `up` uses it, `down` deletes it")
    else:
        check_room(total, claim_capacity(claim), f"the volume claim {claim_name} holds", ROOM_ADVICE)
    wrote = False
    try:
        with running_helper(cluster, spec, writable=True) as pod:
            state = _stat(cluster, pod, directory, items)
            hashes: dict[tuple[str, Optional[int]], str] = {}

            def local_sha(item: Item) -> Callable[[Optional[int]], str]:
                def compute(limit: Optional[int]) -> str:
                    key = (item.name, limit)
                    if key not in hashes:
                        progress.start(f"checksum {item.name}", limit if limit is not None else item.size)
                        hashes[key] = sha256_of(item.local, limit, progress.advance)
                        progress.finish()
                    return hashes[key]
                return compute

            steps = [decide(item, state["files"].get(item.name, {}), local_sha(item)) for item in items]
            check_room(needed_bytes(items, steps), int(state["free"]), f"the volume of {claim_name} has free",
                       "delete what the volume no longer needs (a folder of an old run) or expand the claim")
            outcomes = []
            for item, step in zip(items, steps):
                path = posixpath.join(directory, item.name)
                if step.action == "skip":
                    outcomes.append(Outcome(item, step, path, hashes[(item.name, None)], 0.0))
                    say(f"{item.local} -> {path}: already there (same sha256), skipped")
                    continue
                started = time.time()
                wrote = True
                sha = _send(cluster, pod, directory, item, step.offset, progress)
                outcomes.append(Outcome(item, step, path, sha, time.time() - started))
                resumed = f", resumed at {human(step.offset)}" if step.action == "resume" else ""
                seconds = time.time() - started
                say(f"{item.local} -> {path}: {human(item.size)} in {seconds:.1f} s "
                    f"({human((item.size - step.offset) / max(seconds, 1e-3))}/s{resumed}), sha256 {sha[:16]}...")
            return outcomes
    except BaseException:
        if made_claim and not wrote:
            try:
                cluster.core.delete_namespaced_persistent_volume_claim(claim_name, cluster.namespace)
            except Exception:
                pass
        raise


def _stat(cluster: Cluster, pod: str, directory: str, items: list[Item]) -> dict:
    args = [a for item in items for a in (item.name, str(item.size))]
    result = run_command(cluster, pod, pod_command("stat", directory, *args), timeout=3600)
    if result.code != 0:
        raise RunFailure(f"looking at {directory} in pod {pod} failed: {result.error_line()}")
    return json.loads(result.stdout)


def _send(cluster: Cluster, pod: str, directory: str, item: Item, offset: int,
          progress: TransferProgress) -> str:
    """Stream one file from `offset` on; hash it here as it goes (the prefix first); return the
    sha256 both sides agree on."""
    digest = hashlib.sha256()
    progress.start(f"upload {item.name}", item.size)
    try:
        with open(item.local, "rb") as handle:
            left = offset
            while left > 0:  # the kept prefix, hashed locally (the pod checked it matches)
                block = handle.read(min(READ_CHUNK, left))
                digest.update(block)
                left -= len(block)
                progress.advance(len(block))
            # the expected sha256 must be known before the pod starts: hash the rest first
            rest_start = handle.tell()
            tail = digest.copy()
            while True:
                block = handle.read(READ_CHUNK)
                if not block:
                    break
                tail.update(block)
            expected = tail.hexdigest()
            handle.seek(rest_start)
            stream = ExecStream(cluster, pod, pod_command("receive", directory, item.name, str(item.size),
                                                          str(offset), expected), stdin=True, timeout=600)
            sent = offset
            try:
                while sent < item.size:
                    block = handle.read(READ_CHUNK)
                    if not block:
                        raise RunFailure(f"{item.local} shrank while it was uploaded; upload it again")
                    stream.write(block)
                    digest.update(block)
                    sent += len(block)
                    progress.advance(len(block))
            except EndedEarly:  # the pod's side failed: `finish` below says why
                pass
            except (OSError, ConnectionError) as exc:
                stream.close()
                raise RunFailure(f"the upload of {item.local} was cut after {human(sent)} ({exc}); run the same "
                                 "upload again to continue where it stopped") from None
            result = stream.finish()
    finally:
        progress.finish()
    if result.code != 0:
        raise RunFailure(f"{item.local}: {result.error_line()}")
    answer = json.loads(result.stdout)
    if digest.hexdigest() != expected or answer.get("sha256") != expected or os.path.getsize(item.local) != item.size:
        raise RunFailure(f"{item.local} changed while it was uploaded; upload it again")
    return expected
