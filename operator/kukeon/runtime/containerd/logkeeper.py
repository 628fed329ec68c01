"""The keeper of a container's output pipes: the part of the logger's program
(:mod:`crilog`) that a logger forks at its start, and that kukeond starts by itself where a
task's keeper was killed or never forked (:mod:`logcopier`).

It holds the pipes and never reads them, so that a killed logger's output waits for its
replacement instead of the container's writes failing (EPIPE). It ends when their writers
are gone (the task's deletion), unless they still hold output that no logger takes (every
logger holds a ``flock(2)`` on its pipes for its life): then it logs that itself, with the
logger's own code, into the file the instance's records went to.
"""

from __future__ import annotations

from typing import Final

KEEPER_NAME: Final = "kukeon-keeper"
"""The ``comm`` of a logger's keeper (what tells it from the logger it forked from)."""
DRAINER_NAME: Final = "kukeon-drain"
"""The ``comm`` of a keeper that logs what its killed logger left once the task ended."""
KEEPER_LOOK_SECONDS = 30.0
"""How often a keeper looks whether its log was rotated (and holds the new file instead):
a removed file it held would keep its space on the disk until the task's end."""

KEEPER_ONLY: Final = "KEEPS = True\n"
"""What the argv of a keeper kukeond started by itself holds (``crilog.keeper_command``): it
is no logger, even before it took its name."""

# The start of the logger's program (crilog.LOGGER_SCRIPT): standard library only.
KEEPER_SCRIPT = r"""
import errno, fcntl, os, select, signal, stat, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
def own(fd):
    # A description of the pipe fd reads that this process holds alone (opened again
    # through /proc): a flock lives as long as its description, and the shim holds the read
    # ends it hands its logger until Go's garbage collector closes them, so a lock taken on
    # those would outlive a killed logger and hold its replacement off. Not a pipe (a
    # socket a test hands): left as it is.
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        opened = os.open("/proc/self/fd/%d" % fd, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.dup2(opened, fd, inheritable=False)
    os.close(opened)
def unread(end):
    watch = select.poll()
    watch.register(end, select.POLLIN)
    return any(event & select.POLLIN for _, event in watch.poll(0))
def log_of(held):
    # The file the instance's records went to last: the one held since the start, or, if
    # the logger rotated it since (PATH.<n>, or the previous instance's <n> once kukeond
    # kept it aside), the current one of those; PATH where none is known.
    try:
        where = os.readlink("/proc/self/fd/%d" % held) if held is not None else ""
    except OSError:
        where = ""
    head, dot, number = where.rpartition(".")
    if where and not where.endswith(" (deleted)") and not (number.isdigit() and dot):
        return held
    try:
        if where and not where.endswith(" (deleted)"):
            return os.open(head, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        pass
    return os.open(PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, MODE)
def follow(held):
    # While the task runs, a rename of the held log is a rotation: the instance's records go
    # to PATH again, which is held instead (a rotated file is not kept from removal).
    try:
        where = os.readlink("/proc/self/fd/%d" % held)
        if where == PATH:
            return held
        fresh = os.open(PATH, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        return held
    os.dup2(fresh, held, inheritable=False)
    os.close(fresh)
    return held
def keep():
    # The keeper: a reader of the output pipes that never reads. Without a reader left, the
    # container's writes fail (EPIPE) and the shim's copy of a terminal stops for good;
    # with this one there, a killed logger's output waits in the pipes for its replacement.
    # It ends when they do (their writers gone with the task), unless its logger was killed
    # before it logged all they hold: then it returns, to log that itself.
    global PATH, STREAMS, READY, HOLD, LIMIT
    ends = sorted(STREAMS)
    for name, value in (("oom_score_adj", "-1000"), ("comm", KEEPER_NAME)):  # named: ready
        try:
            with open("/proc/self/" + name, "w") as setting:
                setting.write(value)
        except OSError:
            pass
    for end in ends:  # its own open pipes: a lock a logger takes is not its too (a fork's)
        own(end)
    try:  # the instance's log, to find it again however it is renamed
        held = os.open(PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, MODE)
    except OSError:
        held = None
    kept = sorted(ends + ([held] if held is not None else []))
    for low, high in zip([-1] + kept, kept + [1 << 20]):
        os.closerange(low + 1, high)  # the ready pipe too: the shim waits until it is closed
    watch = select.poll()
    for end in ends:
        watch.register(end, 0)  # no POLLIN: woken by the hangup only
    waiting = list(ends)
    while waiting:
        events = watch.poll(LOOK * 1000)
        if not events and held is not None:
            held = follow(held)
        for end, event in events:
            if event & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                watch.unregister(end)
                waiting.remove(end)
    # Every writer gone. A logger holds a lock on its pipes while it lives: what they still
    # hold while none does (killed after its task's end, as the shim kills one that is not
    # done 12 s after the task's deletion) is this process's to log. Bounded: a logger
    # stopped for ten minutes is given up.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        left = [end for end in ends if unread(end)]
        if not left:
            os._exit(0)
        locked = []
        for end in left:
            try:
                fcntl.flock(end, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                break
            locked.append(end)
        if len(locked) == len(left):
            left = [end for end in left if unread(end)]  # a logger's last take meanwhile
            if not left:
                os._exit(0)
            break
        for end in locked:
            fcntl.flock(end, fcntl.LOCK_UN)
        time.sleep(0.2)
    else:
        os._exit(1)
    try:
        with open("/proc/self/comm", "w") as setting:
            setting.write(DRAINER_NAME)
    except OSError:
        pass
    for end in ends:
        if end not in left:
            os.close(end)
    STREAMS = {end: STREAMS[end] for end in left}
    PATH = "/proc/self/fd/%d" % log_of(held)
    READY = HOLD = None
    LIMIT = 0  # a pipe's worth at most: no rotation, which goes by names
"""
