"""docs/bptt.md section 12 (stepping through the textbook LSTM in pdb) runs as written.

The script and the (Pdb) commands are read from the doc, the script runs with the commands on its
stdin, and the answers the doc promises must come out: the step's shapes, 0.0 for the cell
update checked inside lstm_step, t = 0 then 1 in the forward loop, and the backward at t = 4.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "bptt.md"


def _recipe():
    text = DOC.read_text(encoding="utf-8").split("## 12. Stepping through it in a debugger", 1)[1]
    script = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    session = re.search(r"```text\n(.*?)```", text, flags=re.S).group(1)
    commands = [re.sub(r"\s+#.*$", "", line[len("(Pdb) "):]) for line in session.splitlines()
                if line.startswith("(Pdb) ")]
    return script, commands


def test_debugger_recipe_stops_in_the_step_and_its_backward(tmp_path):
    script, commands = _recipe()
    assert "b scratch.lstm_step" in commands and commands[-1] == "c"
    path = tmp_path / "step_lstm.py"
    path.write_text(script, encoding="utf-8")
    result = subprocess.run([sys.executable, str(path)], input="\n".join(commands) + "\n",
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "***" not in out, out  # pdb reports every failed command with ***
    assert out.count("Breakpoint ") >= 2 and "lstm_cell.py" in out
    answers = [line[len("(Pdb) "):] for line in out.splitlines() if line.startswith("(Pdb) ")]
    assert "((2, 3), (2, 4), (2, 4))" in answers  # x (B, I), h (B, H), c (B, H)
    assert "np.float64(0.0)" in answers or "0.0" in answers  # c_t = f c_{t-1} + i g, exactly
    ts = [a for a in answers if a in {"0", "1", "4"}]
    assert ts == ["0", "1", "4"], answers  # forward at t = 0, 1; backward starts at t = T-1 = 4
    assert "(2, 16)" in answers  # da (B, 4H)
