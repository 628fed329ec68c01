"""`kukectl describe realm` shows the realm's quota use as kubectl describe quota does."""

from __future__ import annotations

from kukeon.cli.quotaview import binary_size, quota_lines


def test_used_and_hard_per_limit_with_none_for_no_limit() -> None:
    lines = quota_lines(
        {"hard": {"objects": 2000}, "used": {"objects": 7, "storageBytes": 1_300_000}}
    )
    assert lines[0] == "Quota:"
    assert lines[1].split() == ["RESOURCE", "USED", "HARD"]
    assert lines[2].split() == ["objects", "7", "2000"]
    assert lines[3].split() == ["storageBytes", "1.2Mi", "<none>"]
    assert lines[4].split() == ["spaces", "0", "<none>"]  # a server that counts none: 0


def test_the_spaces_limit_is_shown() -> None:
    lines = quota_lines({"hard": {"spaces": 3}, "used": {"objects": 9, "spaces": 2}})
    assert lines[4].split() == ["spaces", "2", "3"]


def test_sizes_read_as_people_read_them() -> None:
    assert [binary_size(n) for n in (0, 900, 1024, 1536, 512 << 20, 3 << 40, 5 << 50)] == [
        "0B",
        "900B",
        "1Ki",
        "1.5Ki",
        "512Mi",
        "3Ti",
        "5120Ti",
    ]


def test_the_image_storage_of_the_node_that_answered_is_a_row_none_for_no_limit() -> None:
    status = {"hard": {}, "used": {"objects": 3}, "images": {"node": "n1", "used": 5 << 20}}
    assert quota_lines(status)[-1].split() == ["imageStorageBytes", "(node", "n1)", "5Mi", "<none>"]
    status["images"] = {"node": "n2", "used": 1536, "hard": 1 << 30}
    assert quota_lines(status)[-1].split()[-2:] == ["1.5Ki", "1Gi"]


def test_image_storage_not_read_says_why_and_an_old_server_shows_no_row() -> None:
    unread = {"node": "n1", "used": None, "hard": 100, "problem": "containerd: down"}
    line = quota_lines({"used": {}, "images": unread})[-1]
    assert "<unknown: containerd: down>" in line
    assert line.split()[-1] == "100B"
    assert not any("imageStorageBytes" in line for line in quota_lines({"used": {}}))
