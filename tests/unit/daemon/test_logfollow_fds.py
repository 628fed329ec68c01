"""A log's readers open its kept files one at a time: 400 of them (more than
containerLogMaxFiles allows, as a log kept under an older bound could have) are read whole,
tailed, read since a time, followed across rotations and replayed to an attach session in a
process limited to 64 descriptors. They were all opened at once: "Too many open files"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FILES = 400

# Run in a child whose descriptor limit is below the count of files.
READER = r"""
import os, resource, sys
from datetime import UTC, datetime
from pathlib import Path
from kukeon.daemon.logfollow import ByteFollower, LogFollower

resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
log = Path(sys.argv[1])
count = int(sys.argv[2])

def record(n):
    return b"2026-12-05T10:00:00.000000000Z stdout F line-%d\n" % n

whole = LogFollower(log).tail(None)
assert [r.text for r in whole] == [b"line-%d" % n for n in range(count + 1)], len(whole)
last = [r.text for r in LogFollower(log).tail(3)]
assert last == [b"line-%d" % n for n in (count - 2, count - 1, count)], last
since = datetime.fromtimestamp(os.stat(log.with_name(log.name + ".300")).st_mtime, UTC)
assert len(LogFollower(log).tail(None, since)) >= count - 300

replay = ByteFollower(log, from_start=True)
data = b""
while chunk := replay.read(1 << 16):
    data += chunk
assert data.count(b"\n") == count + 1, data.count(b"\n")
replay.close()

# A follower that sees 400 rotations between two reads.
follower = LogFollower(log)
follower.tail(0)
attached = ByteFollower(log)
for n in range(count + 1, 2 * count + 1):
    os.rename(log, log.with_name("%s.%d" % (log.name, n)))
    log.write_bytes(record(n))
records = follower.read()
expected = [b"line-%d" % n for n in range(count + 1, 2 * count + 1)]
assert [r.text for r in records] == expected, len(records)
data = b""
while chunk := attached.read(1 << 16):
    data += chunk
assert data.count(b"\n") == count, data.count(b"\n")
print("ok")
"""


def test_400_kept_files_are_read_within_64_descriptors(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    for number in range(1, FILES + 1):
        record = f"2026-12-05T10:00:00.000000000Z stdout F line-{number - 1}\n"
        path = tmp_path / f"c.log.{number}"
        path.write_text(record)
        os.utime(path, (1_700_000_000 + number, 1_700_000_000 + number))
    log.write_text(f"2026-12-05T10:00:00.000000000Z stdout F line-{FILES}\n")
    done = subprocess.run(
        [sys.executable, "-c", READER, str(log), str(FILES)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout == b"ok\n"
