"""Container logs in the CRI format, written by a logger the containerd shim owns.

A line of the log is ``<RFC 3339 time, nanoseconds, UTC> <stdout|stderr> <F|P> <text>``, as
the kubelet's CRI logs (``F``: a full line, ``P``: a part of a longer line that the next
record of the same stream continues). Why a logger of our own and not containerd's
``file://`` URI: containerd 1.6's shim copies stdout and stderr into one ``file://`` log
with two goroutines and closes the file when the *stdout* copy ends, so a stderr line still
in its pipe is lost (``copyPipes`` hands stdout the raw file, not its counting closer). The
streams also become indistinguishable and carry no time.

The logger is containerd's ``binary://`` logging: the shim starts it as its own child with
the container's stdout on fd 3, stderr on fd 4, and waits until it closes fd 5. It is a
small stdlib-only Python program (``LOGGER_SCRIPT``) run by kukeond's interpreter in
isolated mode, so it lives exactly as long as the task, whatever happens to kukeond: output
written while kukeond is down is in the log, and nothing of it passes through kukeond. It
never exits before both streams end (SIGTERM, which the shim sends right after closing its
pipe ends at task deletion, is ignored so the pipes are drained), and a failed write (disk
full) drops that read's records instead of killing the logger, which would break the
container's pipes; they are counted, and once the disk takes writes again the log says how
many were lost and why, in a ``stderr`` record of its own (``[kukeon] N records (B bytes) of
output were not logged: No space left on device``). Each read's records go to the file in
one ``write`` on an ``O_APPEND`` descriptor; of a short one (the disk filled up during it)
the cut record is truncated away, so the log holds whole records only.
A logger killed while its task runs is replaced by kukeond (:mod:`logcopier`); a record
the kill cut short (a write a fatal signal stopped) is taken back by the replacement. Every
logger forks a keeper first (``KEEPER_NAME``): a reader of its pipes that never reads, so
that a killed logger's output waits for the replacement; and it takes from a pipe only what
it has logged (``tee(2)``, write, then take), so a kill at any point loses nothing: at worst
the replacement logs the killed one's last read (at most 64 KiB) again. A logger holds a
lock (``flock(2)``) on its pipes for its life: a keeper whose pipes ended (every writer gone
with the task's deletion) still holding output that no locked logger takes logs it itself,
into the file that instance's records went to (a logger killed after its task's end).

The logger bounds the log (:class:`LogRotation`, kukeond's ``containerLogMaxSize`` and
``containerLogMaxFiles``): it is the file's only writer, so it rotates by itself, without
the copy-and-truncate race of an outside rotator. Before a write would take the file past
the size, the file is renamed ``<log>.<n>`` (``n`` one more than the last kept file's, so a
replacement logger goes on numbering; a name kept until the file is removed, so a reader
that listed the kept files never finds one renamed under it, which logrotate's shifting
``.1``..``.N`` would do at every rotation, and no wall clock orders them), a new file is
opened, and the oldest beyond the count are removed. Records are never cut between files.
A rename or removal the disk refuses leaves the records going to the current file, said
in a ``stderr`` record (``[kukeon] the log could not be rotated (N tries: why)``), and is
tried again a second later; the pipes are never left unread. A terminal's output (an
attachable container's, raw bytes) is rotated alike, between lines (a line longer than a
whole file is cut into pieces of that size); its files carry ``hostfiles.TERMINAL_LOG_MARK``
in their mode, set before their first byte, so a reader takes none of its lines for a
record however the container shapes them (:mod:`logrecords`).
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlencode

from kukeon.runtime.hostfiles import LOG_FILE_MODE, TERMINAL_LOG_MARK

from . import logkeeper
from .logkeeper import DRAINER_NAME, KEEPER_SCRIPT
from .logkeeper import KEEPER_NAME as KEEPER_NAME  # where callers found it first

# The reader's half, where callers found it first:
from .logrecords import LogRecord as LogRecord
from .logrecords import RenderOptions as RenderOptions
from .logrecords import ends_open as ends_open
from .logrecords import parse_lines as parse_lines
from .logrecords import parse_record as parse_record
from .logrecords import plain_text as plain_text
from .logrecords import render as render

MAX_RECORD_BYTES = 16 * 1024
"""A longer line is split into ``P`` records of this size (the kubelet's limit)."""


@dataclass(frozen=True)
class LogRotation:
    """When a logger starts a new file: before the current one would exceed ``max_size``
    bytes it becomes ``<log>.<n>`` (``n`` growing by one at each rotation, never renamed
    again) and the oldest are removed so that ``max_files`` files remain, the current one
    included (the kubelet's ``containerLogMaxSize`` and ``containerLogMaxFiles``)."""

    max_size: int = 10 * 1024 * 1024
    max_files: int = 5

    def __post_init__(self) -> None:
        if self.max_files < 2 or self.max_size < 1:
            raise ValueError(f"{self} keeps no file to rotate into")


MIN_ROTATED_SIZE = 4 * MAX_RECORD_BYTES
"""The smallest ``max_size`` kukeond accepts: a file holds several of the longest records."""

MAX_KEPT_FILES = 100
"""The most ``max_files`` kukeond accepts. Every rotation lists the log's directory (the
logger, and each follower that sees it), whose files are every container's of the cell,
twice (the previous instance's), and a whole log is read file by file: a typo such as 50000
would make each of those cost tens of thousands of entries. A longer history is a larger
``max_size``, not more files."""

# Kept free of anything but the standard library: it runs with `-I -S` (no site-packages).
LOGGER_SCRIPT = (
    KEEPER_SCRIPT
    + r"""
if KEEPS or (KEEPER and os.fork() == 0):
    keep()
def locks(fd):
    # False while another description of the pipe is locked: a logger of an older kukeond
    # locked the shim's, which outlives it (see own); its replacement copies meanwhile (a
    # kukeond starts one only once the last exited) and takes the lock when it can.
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True
unlocked = set()
for fd in STREAMS:  # held for life: no keeper logs what this logger is to log
    own(fd)
    if not locks(fd):
        unlocked.add(fd)
FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
lost = {"records": 0, "bytes": 0, "why": "a short write", "cut": False}
def opened():
    # The log file, or -1 while the disk has no room to make it (no inode left, over
    # quota): the task starts all the same (a logger that exited here failed it: a cell
    # restarted on a full disk ended TaskLost), its output dropped and counted until the
    # file can be made, tried again a second later, as for a write the disk refuses.
    # Its mode says its kind (the sticky bit: a terminal's bytes) before its first byte
    # here: a file appended to may be an older kukeon's, or an instance's that wrote nothing.
    try:
        fd = os.open(PATH, FLAGS, MODE)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if (mode ^ MODE) & stat.S_ISVTX:
            os.fchmod(fd, mode ^ stat.S_ISVTX)
        return fd
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        lost["why"] = error.strerror or str(error)
        st["retry"] = time.monotonic() + 1.0
        return -1
st = {"retry": 0.0}
log = opened()
FOLDER, BASE = os.path.split(PATH)
def rotated():
    # The kept files of this log (PATH.<n>, n growing with each rotation), oldest first.
    try:
        names = os.listdir(FOLDER)
    except OSError:
        return []
    found = []
    for name in names:
        number = name[len(BASE) + 1:]
        if name.startswith(BASE + ".") and number.isdigit() and number.isascii():
            found.append((int(number), os.path.join(FOLDER, name)))
    return sorted(found)
kept = rotated()
st.update(size=os.fstat(log).st_size if log >= 0 else 0, next=kept[-1][0] + 1 if kept else 1,
          failed=0, failwhy="")
# A TTY's stdin FIFO: its writer held for the task's life keeps the shim's console up.
hold = os.open(HOLD, os.O_RDWR | os.O_CLOEXEC) if HOLD is not None else None
# kukeond's word that the task ended (SIGUSR2, once it saw the exit): the shim holds the
# pipes' write ends until the task is deleted, so no hangup tells; a stream's line without
# its end is logged then, as at a hangup. Caught before the task can start (READY).
told, telling = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
signal.set_wakeup_fd(telling)
signal.signal(signal.SIGUSR2, lambda number, frame: None)
if READY is not None:
    os.close(READY)
for procs in JOIN:  # the realm's cgroup, before any read: what it copies is the realm's CPU
    try:  # (its keeper, which never reads while the task runs, stays out of the realm's pids)
        joining = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(joining, b"%d" % os.getpid())
        finally:
            os.close(joining)
    except OSError:
        pass  # the realm's cgroup not there (yet, or any more): the output is logged all the same
names = {fd: b" " + name + b" " for fd, name in STREAMS.items()}
rest = {fd: b"" for fd in names}
ended = set()
def stamp():
    seconds, nanos = divmod(time.time_ns(), 1000000000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return ("%s.%09dZ" % (text, nanos)).encode()
def mend():
    # A replacement appends where its predecessor was killed, and a write that a fatal
    # signal cut short leaves a record without its end: it is taken back (whole records
    # only, as after a short write) instead of running into this logger's first record.
    size = st["size"]
    if not size:
        return
    if RAW:  # a line it ends inside: its start is in the pipe still (or cut), logged again whole
        try:
            with open(PATH, "rb") as tail_of:
                tail_of.seek(size - 1)
                lost["cut"] = tail_of.read(1) != b"\n"
        except OSError:
            pass
        return
    start = max(size - 2 * MAX, 0)
    try:
        with open(PATH, "rb") as tail_of:
            tail_of.seek(start)
            tail = tail_of.read(size - start)
    except OSError:
        return
    if tail.endswith(b"\n"):
        return
    keep = start + tail.rfind(b"\n") + 1
    if keep == start and start:  # no end of a record near the end: ended, not taken back
        lost["cut"] = True
        return
    try:
        os.ftruncate(log, keep)
        st["size"] = keep
    except OSError:
        lost["cut"] = True
mend()
def failed(error):
    # A rotation the disk refused: the records go on into the current file (over its limit)
    # rather than wait; said in the log, and tried again in a second.
    st["failed"] += 1
    st["failwhy"] = error.strerror or str(error)
    st["retry"] = time.monotonic() + 1.0
    return False
def rotate():
    # PATH becomes PATH.<next> (a name it keeps until it is removed, so a reader that listed
    # the kept files never sees one renamed), a new PATH is opened, and the oldest beyond
    # KEEP files (PATH included) are removed. The only writer renames: no copy, no race.
    global log
    if time.monotonic() < st["retry"]:
        return False
    target = "%s.%d" % (PATH, st["next"])
    try:
        os.rename(PATH, target)
    except OSError as error:
        return failed(error)
    try:
        fresh = os.open(PATH, FLAGS, MODE)
    except OSError as error:
        try:  # the records keep going to the file readers follow
            os.rename(target, PATH)
        except OSError:
            pass
        return failed(error)
    try:
        os.fchmod(fresh, MODE)  # whatever the shim's umask
    except OSError:
        pass
    os.close(log)
    log = fresh
    st.update(size=0, next=st["next"] + 1)
    for _number, old in rotated()[:-(KEEP - 1)]:
        try:
            os.unlink(old)
        except FileNotFoundError:
            pass
        except OSError as error:
            failed(error)
    return True
def pending():
    return lost["bytes"] or lost["cut"] or st["failed"]
def lines_of(data):
    # A terminal's output is cut into lines where a rotation is due, so that each file ends
    # with a whole line where it can (a reader of lines would leave a cut one behind); a
    # line longer than a whole file into pieces of a file's size.
    parts = data.split(b"\n")
    last = parts.pop()
    lines = [part + b"\n" for part in parts] + ([last] if last else [])
    return [line[at:at + LIMIT] for line in lines for at in range(0, len(line), LIMIT)]
def write(records):
    # Whole records per file: those that would take it past LIMIT go to the next one.
    if not records:
        return
    data = b"".join(records)
    if log < 0 or not LIMIT or st["size"] + len(data) + (512 if pending() else 0) <= LIMIT:
        return append(data)
    if RAW:
        records = lines_of(data)
    while records:
        room = LIMIT - st["size"] - (512 if pending() else 0)
        take = used = 0
        for record in records:
            used += len(record)
            if used > room:
                break
            take += 1
        if not take and st["size"] and rotate():
            continue
        if not take:  # a rotation refused (said), or a record longer than a whole file
            take = len(records) if st["size"] else 1
        append(b"".join(records[:take]))
        records = records[take:]
def append(data):
    # Disk full: this read's records are dropped (blocking the container's output would be
    # worse), counted, and said in the log once it takes writes again.
    global log
    if log < 0 and time.monotonic() >= st["retry"]:
        log = opened()
    if log < 0:  # no file yet: what it would hold is lost, and said once there is one
        lost["records"] += data.count(b"\n")
        lost["bytes"] += len(data)
        return
    head = b"\n" if lost["cut"] else b""
    if lost["bytes"] and RAW:
        head += b"\r\n[kukeon] %d bytes of terminal output were not logged: %s\r\n" % (
            lost["bytes"], lost["why"].encode())
    elif lost["bytes"]:
        head += b"%s stderr F [kukeon] %d records (%d bytes) of output were not logged: %s\n" % (
            stamp(), lost["records"], lost["bytes"], lost["why"].encode())
    if st["failed"] and not RAW:
        head += b"%s stderr F [kukeon] the log could not be rotated (%d tries: %s): " % (
            stamp(), st["failed"], st["failwhy"].encode())
        head += b"its files may hold more than their limit\n"
    whole = head + data
    try:
        written = os.write(log, whole)
    except OSError as error:
        written, lost["why"] = 0, error.strerror or str(error)
    if 0 < written < len(whole):
        try:  # the rest once more: the kernel says why it stopped (ENOSPC, EDQUOT...)
            written += os.write(log, whole[written:])
        except OSError as error:
            lost["why"] = error.strerror or str(error)
    if 0 < written < len(whole) and not RAW:
        # A short write (the disk filled up during it) keeps the records it wrote whole:
        # the cut one is taken back, so the log holds whole records only (where the
        # truncation fails, the next write ends the cut record).
        keep = whole.rfind(b"\n", 0, written) + 1
        try:
            os.ftruncate(log, os.fstat(log).st_size - (written - keep))
            written = keep
        except OSError:
            pass
    st["size"] += written
    if written >= len(head):
        lost.update(records=0, bytes=0)
        st["failed"] = 0
    unwritten = data[max(written - len(head), 0):]
    lost["records"] += unwritten.count(b"\n")
    lost["bytes"] += len(unwritten)
    if written:
        lost["cut"] = not RAW and not whole[:written].endswith(b"\n")
# At least once: what a stream's pipe holds is copied out of it without taking it
# (tee(2)), logged, and only then taken (spliced to /dev/null), so a logger killed at any
# point leaves what it had not logged in the pipe, for its replacement; what it logged and
# had not taken yet is logged twice. A line's start stays in the pipe until its end comes.
try:
    import ctypes
    TEE = ctypes.CDLL(None, use_errno=True).tee
    TEE.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint)
    TEE.restype = ctypes.c_ssize_t
    copy_r, copy_w = os.pipe2(os.O_CLOEXEC)
    sink = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
except (ImportError, OSError, AttributeError):
    TEE = None
teed = {fd: TEE is not None for fd in names}
def peek(fd):
    # What fd holds from the start of what is not logged yet; None: nothing now; b"": ended.
    while teed[fd]:
        count = TEE(fd, copy_w, 1 << 20, 2)  # SPLICE_F_NONBLOCK
        if count >= 0:
            chunks = []
            while count:
                chunk = os.read(copy_r, count)
                chunks.append(chunk)
                count -= len(chunk)
            return b"".join(chunks)
        number = ctypes.get_errno()
        if number == errno.EAGAIN:
            return None
        if number != errno.EINTR:
            # No pipe (EINVAL), or tee refused: read it, keeping what is not logged yet
            # here (a line's start still in the pipe comes with the read).
            teed[fd] = False
            rest[fd] = b""
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return None
    except OSError:
        data = b""
    return rest[fd] + data if data else b""  # ended: what it held was logged as it ended
def take(fd, count):
    # What was logged leaves the pipe (a stream that is no pipe was taken by its read).
    while teed[fd] and count > 0:
        try:
            taken = os.splice(fd, sink, count)
        except OSError:
            try:
                taken = len(os.read(fd, count))
            except OSError:
                return
        if not taken:
            return
        count -= taken
def copy(fd, ended):
    # One pass over fd; False once there is nothing more to do before it changes.
    data = peek(fd)
    if data is None:
        if ended and rest[fd] and not teed[fd] and not RAW:  # read already: told it ended
            write([stamp() + names[fd] + b"F " + rest[fd] + b"\n"])
            rest[fd] = b""
        return False
    if not data and rest[fd] and not RAW:  # a stream that is no pipe ended inside a line
        write([stamp() + names[fd] + b"F " + rest[fd] + b"\n"])
    if RAW:  # a terminal's output, as it is: a line's start logged at once, taken with its end
        if data and data == rest[fd] and not ended:
            return False
        if len(data) > len(rest[fd]):
            write([data[len(rest[fd]):]])
        end = data.rfind(b"\n") + 1
        if ended or not teed[fd] or len(data) - end > MAX:
            end = len(data)
        take(fd, end)
        rest[fd] = data[end:]
    elif data:
        now = stamp()
        records = []
        lines = data.split(b"\n")
        tail = lines.pop()
        for line in lines:
            while len(line) > MAX:
                records.append(now + names[fd] + b"P " + line[:MAX] + b"\n")
                line = line[MAX:]
            records.append(now + names[fd] + b"F " + line + b"\n")
        while len(tail) >= MAX:
            records.append(now + names[fd] + b"P " + tail[:MAX] + b"\n")
            tail = tail[MAX:]
        if ended and not records:  # the writers are gone: the last line has no end
            records.append(now + names[fd] + b"F " + tail + b"\n")
            tail = b""
        if not records:  # a line's start only: its end comes with a later write
            rest[fd] = tail
            return False
        write(records)
        take(fd, len(data) - len(tail))
        rest[fd] = tail
    if not data:
        poller.unregister(fd)
        del rest[fd]
        return False
    return True
# Edge-triggered: a write into a pipe whose line's start waits there wakes it once, rather
# than it being readable all along. An older kernel woke an edge-triggered reader only when
# the pipe was empty: a held line's start is looked at again every second as well.
poller = select.epoll()
for fd in names:
    os.set_blocking(fd, False)  # what is not a pipe is read until there is nothing left
    poller.register(fd, select.EPOLLIN | select.EPOLLET)
poller.register(told, select.EPOLLIN)
due = set(names)  # what waits already (a replacement's pipes) is logged first
while True:
    unlocked = {fd for fd in unlocked if fd in rest and not locks(fd)}
    for fd in due:
        while fd in rest and copy(fd, fd in ended):
            pass
    if not rest:
        break
    waiting = any(rest.values())
    events = poller.poll(1.0 if waiting or unlocked else -1)
    due = {fd for fd, _event in events if fd in rest}
    if waiting:
        due |= {fd for fd, tail in rest.items() if tail}
    ended = {fd for fd, event in events if event & (select.EPOLLHUP | select.EPOLLERR)}
    if any(fd == told for fd, _event in events):
        try:
            signals = os.read(told, 64)
        except BlockingIOError:
            signals = b""
        if signal.SIGUSR2 in signals:  # the task ended: what waits for a line's end is due
            due |= set(rest)
            ended |= set(rest)
"""
)


SHIM_STREAMS: Final = {3: "stdout", 4: "stderr"}
"""The descriptors the shim hands its logger: stdout on 3, stderr on 4 (5: ready)."""
SHIM_READY_FD: Final = 5


def logger_command(
    path: Path,
    *,
    python: str | None = None,
    streams: Mapping[int, str] = SHIM_STREAMS,
    ready_fd: int | None = SHIM_READY_FD,
    terminal_of: Path | None = None,
    rotation: LogRotation | None = None,
    keeper: bool = False,
    keep_only: bool = False,
    cgroup_procs: Sequence[Path] = (),
) -> list[str]:
    """The logger's argv: kukeond's interpreter, isolated, running ``LOGGER_SCRIPT``; it
    reads ``streams`` (descriptor: stream name) and closes ``ready_fd`` once the log is open
    (the shim waits for that). A replacement (:mod:`logcopier`) passes its own.

    ``terminal_of``: the stdin FIFO of a TTY task (:mod:`ttyio`): the output is appended as
    it is, not as records, and a writer of the FIFO is held for the task's life; rotated
    as the records are, between lines (a line longer than a whole file is cut into pieces
    of that size).
    ``rotation``: the log's size bound; None: the file grows as long as the task runs.
    ``keeper``: fork the keeper of the pipes first (the shim's logger; a replacement reads
    the pipes the first one's keeper holds).
    ``keep_only``: a keeper by itself (:func:`keeper_command`).
    ``cgroup_procs``: the ``cgroup.procs`` files the logger writes its pid to once the task
    may start, before it reads (its realm's copiers' cgroup: the realm's CPU share counts
    it; a file it cannot write is passed over)."""
    named = {fd: name.encode() for fd, name in streams.items()}
    hold = str(terminal_of) if terminal_of is not None else None
    mode = LOG_FILE_MODE | (TERMINAL_LOG_MARK if terminal_of is not None else 0)
    limit, keep = (rotation.max_size, rotation.max_files) if rotation is not None else (0, 0)
    prelude = (
        f"PATH = {str(path)!r}\nMODE = {mode:#o}\nMAX = {MAX_RECORD_BYTES}\n"
        f"STREAMS = {named!r}\nREADY = {ready_fd!r}\n"
        f"RAW = {terminal_of is not None!r}\nHOLD = {hold!r}\n"
        f"LIMIT = {limit}\nKEEP = {keep}\n"
        f"KEEPER = {keeper!r}\nKEEPER_NAME = {KEEPER_NAME!r}\n"
        f"DRAINER_NAME = {DRAINER_NAME!r}\nKEEPS = {keep_only!r}\n"
        f"LOOK = {logkeeper.KEEPER_LOOK_SECONDS!r}\n"
        f"JOIN = {[str(procs) for procs in cgroup_procs]!r}\n"
    )
    return [python or sys.executable, "-ISc", prelude + LOGGER_SCRIPT]


def keeper_command(
    path: Path,
    streams: Mapping[int, str],
    ready_fd: int,
    *,
    python: str | None = None,
    terminal_of: Path | None = None,
) -> list[str]:
    """The argv of a keeper on its own (one kukeond starts where a task's keeper was
    killed, or never forked): it holds ``streams`` (descriptor: stream name) of the task
    whose log is ``path`` and closes ``ready_fd`` once it took its name (``KEEPER_NAME``,
    how ``logcopier.find_copier`` tells it). Like a logger's keeper, it logs what the pipes
    still hold once their writers are gone and no logger is left (``terminal_of``: a
    terminal's, as it is)."""
    return logger_command(
        path,
        python=python,
        streams=streams,
        ready_fd=ready_fd,
        terminal_of=terminal_of,
        keep_only=True,
    )


def log_path_marker(path: Path) -> str:
    """What a logger's argv holds that names its log file (how its process is found)."""
    return f"PATH = {str(path)!r}\n"


def streams_in(script: bytes) -> dict[int, str]:
    """The descriptors (and their streams) that a logger or keeper whose ``-c`` script is
    ``script`` holds its task's output pipes on; {} where its argv does not say."""
    for line in script.splitlines():
        if line.startswith(b"STREAMS = "):
            try:
                named = ast.literal_eval(line[len(b"STREAMS = ") :].decode())
            except (ValueError, SyntaxError, UnicodeDecodeError):
                return {}
            if isinstance(named, dict):
                return {
                    fd: name.decode(errors="replace")
                    for fd, name in named.items()
                    if isinstance(fd, int) and isinstance(name, bytes)
                }
            return {}
    return {}


def logger_uri(
    path: Path,
    *,
    python: str | None = None,
    terminal_of: Path | None = None,
    rotation: LogRotation | None = None,
    cgroup_procs: Sequence[Path] = (),
) -> str:
    """The ``binary://`` URI of a task's stdout and stderr that logs them to ``path`` (a TTY
    task's: ``terminal_of`` its stdin FIFO; ``rotation``, ``cgroup_procs``: see
    ``logger_command``)."""
    streams = {3: "terminal"} if terminal_of is not None else SHIM_STREAMS
    binary, flags, script = logger_command(
        path.absolute(),
        python=python,
        streams=streams,
        terminal_of=terminal_of.absolute() if terminal_of is not None else None,
        rotation=rotation,
        keeper=True,
        cgroup_procs=cgroup_procs,
    )
    # One query key, so the shim's (unordered) map of arguments gives `python -ISc SCRIPT`.
    return f"binary://{binary}?" + urlencode({flags: script})


def rotated_logs(path: Path) -> list[Path]:
    """The kept files a logger rotated ``path`` into (``<path>.<n>``), oldest first."""
    found: list[tuple[int, Path]] = []
    prefix = path.name + "."
    try:
        names = [entry.name for entry in os.scandir(path.parent)]
    except OSError:
        return []
    for name in names:
        number = name[len(prefix) :]
        if name.startswith(prefix) and number.isdigit() and number.isascii():
            found.append((int(number), path.parent / name))
    return [file for _, file in sorted(found)]
