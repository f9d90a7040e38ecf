"""Every code block of the README runs, so that the README cannot drift from the code."""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```$", README, flags=re.MULTILINE | re.DOTALL)

# Runs the blocks in order in one fresh interpreter (one TensorFlow start-up), each in a
# namespace of its own; they share the working directory, as a reader's shell session would.
RUNNER = """
import sys
blocks = sys.stdin.read().split("\\n# ---- next block ----\\n")
for number, code in enumerate(blocks, 1):
    try:
        exec(compile(code, f"README python block {number}", "exec"), {"__name__": "__main__"})
    except BaseException:
        print(f"README python block {number} failed:\\n{code}", file=sys.stderr)
        raise
"""


def test_the_readme_opens_with_the_demo_and_the_test_commands():
    commands = [code.strip() for language, code in BLOCKS[:2]]
    assert [language for language, _ in BLOCKS[:2]] == ["bash", "bash"]
    assert commands[0] == 'pip install -e ".[examples]" && python examples/simclr_digits.py'
    assert commands[1] == 'pip install -e ".[test]" && python -m pytest -n 2 --durations=15'
    assert (ROOT / "examples" / "simclr_digits.py").exists()  # run by tests/examples
    # .ci/run evals the README line that starts with `pip install -e ".[test]"`.
    assert "README.md" in (ROOT / ".ci" / "run").read_text()


def test_every_python_block_runs(tmp_path):
    python = [code for language, code in BLOCKS if language == "python"]
    assert len(python) >= 5
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input="\n# ---- next block ----\n".join(python),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
