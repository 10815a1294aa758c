"""The README's runnable examples (```python blocks) run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has runnable examples"
    for code in blocks:
        code = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:0", code)  # no fixed ports in tests
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
