"""What the transfer helper pod runs: this file's source is sent as `python3 -c SOURCE COMMAND ARGS`
to the pod (standard library only, so any image with a python3 works), and its functions are
tested in-process on this machine.

Commands (one exec each; answers are one JSON line, errors one line on stderr and exit 1):

    stat DIR NAME SIZE [NAME SIZE ...]   per file: size of DIR/NAME and DIR/NAME.part, the sha256
                                         of DIR/NAME when its size equals SIZE, the sha256 of the
                                         .part file; and the free bytes under DIR
    receive DIR NAME SIZE OFFSET SHA256  read SIZE-OFFSET bytes from stdin into DIR/NAME.part
                                         (kept up to OFFSET), check the whole file's sha256 and
                                         rename it to DIR/NAME; exactly SIZE-OFFSET bytes are read,
                                         so no end-of-stdin is needed (the exec protocol before
                                         v5 cannot close stdin)
    send ROOT NAME [NAME ...]            an uncompressed tar of ROOT/NAME... on stdout (streamed,
                                         never held in memory); on stderr first {"total": bytes of
                                         the files}, at the end {"sha256": ..., "bytes": ...} of
                                         the tar as written
    check PATH TARGET                    PATH is a readable file whose CSV header has TARGET

Memory stays small (1 MiB buffers; written data is synced every 32 MiB so that dirty pages do
not pile up against the pod's memory limit).
"""

import hashlib
import json
import os
import sys
import tarfile

CHUNK = 1 << 20
SYNC_EVERY = 32 << 20


def file_sha256(path, limit=None, on_bytes=None):
    """sha256 of a file (or of its first `limit` bytes); `on_bytes(n)` after each piece read."""
    digest = hashlib.sha256()
    left = limit
    with open(path, "rb") as handle:
        while left is None or left > 0:
            block = handle.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            digest.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
            if left is not None:
                left -= len(block)
    return digest.hexdigest()


def _size(path):
    try:
        return os.stat(path).st_size if os.path.isfile(path) else -1
    except OSError:
        return -1


def stat(directory, pairs):
    """What the volume holds of each (name, size) under `directory`, and the space left."""
    files = {}
    for name, size in pairs:
        path = os.path.join(directory, name)
        have, part = _size(path), _size(path + ".part")
        files[name] = {"size": have, "part": part,
                       "sha256": file_sha256(path) if have == size else None,
                       "part_sha256": file_sha256(path + ".part") if part > 0 else None}
    probe = directory
    while not os.path.isdir(probe) and probe not in ("", "/"):
        probe = os.path.dirname(probe)
    fs = os.statvfs(probe or "/")
    return {"files": files, "free": fs.f_bavail * fs.f_frsize}


def receive(directory, name, size, offset, expected, source):
    """Append the bytes of `source` to NAME.part from `offset` on, check, rename to NAME."""
    path = os.path.join(directory, name)
    part = path + ".part"
    os.makedirs(os.path.dirname(part), exist_ok=True)
    digest = hashlib.sha256()
    mode = "r+b" if offset > 0 else "wb"
    with open(part, mode) as out:
        if offset > 0:
            if os.fstat(out.fileno()).st_size < offset:
                raise SystemExit(f"{part} is shorter than the resume offset {offset}")
            left = offset
            while left > 0:  # the kept prefix counts in the file's checksum
                block = out.read(min(CHUNK, left))
                if not block:
                    break
                digest.update(block)
                left -= len(block)
            out.seek(offset)
            out.truncate(offset)
        left, unsynced = size - offset, 0
        while left > 0:
            block = source.read(min(CHUNK, left))
            if not block:
                out.flush()
                raise SystemExit(f"the stream ended {left} bytes early; {part} keeps "
                                 f"{size - left} bytes (upload again to continue)")
            out.write(block)
            digest.update(block)
            left -= len(block)
            unsynced += len(block)
            if unsynced >= SYNC_EVERY:
                out.flush()
                os.fsync(out.fileno())
                unsynced = 0
        out.flush()
        os.fsync(out.fileno())
    got = digest.hexdigest()
    if got != expected:
        os.unlink(part)
        raise SystemExit(f"{name}: sha256 on the volume {got} differs from this machine's {expected}; "
                         "the partial file was removed, upload again")
    os.replace(part, path)
    return {"name": name, "size": size, "sha256": got}


class HashingWriter:
    """A write-only stream that counts and hashes what passes through it."""

    def __init__(self, target):
        self.target, self.digest, self.count = target, hashlib.sha256(), 0

    def write(self, data):
        self.target.write(data)
        self.digest.update(data)
        self.count += len(data)
        return len(data)

    def flush(self):
        self.target.flush()


def total_bytes(root, names):
    total = 0
    for name in names:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            total += os.path.getsize(path)
        for folder, _, files in os.walk(path):
            total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total


def add_whole(tar, path, name):
    """Add PATH (a file, or a folder and all it holds) as NAME, each file's size and bytes read
    through one open descriptor: a file the chief replaces while the tar is written (it renames a
    new progress.json over the old every second) comes whole, old or new. (`tar.add` takes the size
    from the path and then opens it again: the new file's first bytes cut to the old size.) What
    is gone by the time it is reached is left out; links and other special files are skipped."""
    if os.path.isdir(path) and not os.path.islink(path):
        tar.add(path, arcname=name, recursive=False)
        try:
            entries = sorted(os.listdir(path))
        except FileNotFoundError:
            return
        for entry in entries:
            add_whole(tar, os.path.join(path, entry), name + "/" + entry)
        return
    if os.path.islink(path) or not os.path.isfile(path):
        return
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        tar.addfile(tar.gettarinfo(arcname=name, fileobj=handle), handle)


def send(root, names, out, err):
    """A tar of ROOT/NAME... (those that exist) on `out`; its size and sha256 on `err`."""
    err.write(json.dumps({"total": total_bytes(root, names)}) + "\n")
    err.flush()
    writer = HashingWriter(out)
    with tarfile.open(fileobj=writer, mode="w|", bufsize=CHUNK) as tar:
        for name in names:
            add_whole(tar, os.path.join(root, name), name)
    writer.flush()
    err.write(json.dumps({"sha256": writer.digest.hexdigest(), "bytes": writer.count}) + "\n")
    err.flush()


def check(path, target):
    """A readable file whose CSV header names `target` (only the first line is read)."""
    if not os.path.exists(path):
        raise SystemExit(f"{path} does not exist in the pods")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} is not a file")
    try:
        with open(path, "rb") as handle:
            header = handle.readline(1 << 20).decode("utf-8", "replace").strip().lstrip("\ufeff")
    except OSError as exc:
        raise SystemExit(f"{path} cannot be read in the pods ({exc.strerror})")
    columns = [c.strip().strip('"') for c in header.split(",")]
    if target not in columns:
        raise SystemExit(f"column {target!r} is not in the header of {path} (its columns: "
                         f"{', '.join(columns[:20])})")
    return {"path": path, "size": os.path.getsize(path), "columns": len(columns)}


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "stat":
        answer = stat(args[0], [(args[i], int(args[i + 1])) for i in range(1, len(args), 2)])
    elif command == "receive":
        answer = receive(args[0], args[1], int(args[2]), int(args[3]), args[4], sys.stdin.buffer)
    elif command == "send":
        send(args[0], args[1:], sys.stdout.buffer, sys.stderr)
        return
    elif command == "check":
        answer = check(args[0], args[1])
    else:
        raise SystemExit(f"unknown command {command!r}")
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
