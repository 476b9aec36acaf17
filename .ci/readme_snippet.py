"""Print the README's Python snippet that contains the text given as the first argument."""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def main() -> None:
    blocks = [b for b in FENCE.findall(README.read_text(encoding="utf-8")) if sys.argv[1] in b]
    if len(blocks) != 1:
        sys.exit(f"{len(blocks)} README snippets contain {sys.argv[1]!r}; expected one")
    sys.stdout.write(blocks[0])


if __name__ == "__main__":
    main()
