"""Text from the server made safe to print on a terminal.

Labels, annotations, commands, messages and Events hold whatever their writer put there, and a
realm's user writes them. Printed raw in a table, an escape sequence would act on the reader's
terminal (OSC 52 writes the clipboard on many terminals, others set the title or clear the
screen) and a newline would add a row that is not an object (kubectl's CVE-2021-25743). Human
output escapes them; ``-o yaml|json`` already quotes them and ``-o jsonpath`` and ``logs``
print what is stored, as kubectl does.
"""

from __future__ import annotations

import re

# C0 controls and DEL, C1 controls, and the bidirectional overrides and isolates, which
# reorder what is shown (Trojan Source): each is shown as its escape.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """``text`` with every control character (newlines too) shown as its escape."""
    return _UNSAFE.sub(_escaped, text)
