"""Mutation checks of the compiled kernels: would the tests notice a small slip in the C++?

    .venv/bin/python benchmarks/mutate_kernels.py              # every mutant (~15-30 min, 2 cores)
    .venv/bin/python benchmarks/mutate_kernels.py --only gru-  # the mutants whose id starts so

Opt-in (not part of the test suite): it copies the package (``src/rnnkit``) into a temporary
folder, builds the unchanged copy once and runs the kernel tests against it (they must pass),
then for each mutant below changes one expression in the copy's C++ (a wrong sign in a backward
term, a dropped mask, an index off by one step, a swapped gate; each row gives the code as it
stands with its change marked ``[[old => new]]``, and every row is looked up before anything is
built: one whose code is not in its file exactly once stops the run), lets the build rebuild the
changed file (one extension folder for the whole run, so ninja recompiles only what changed) and
runs that cell's test file against it, with the copy first on ``PYTHONPATH``. A mutant is
*killed* when the tests fail (or crash); one that *survives* means a test is missing. The table
goes into docs/benchmarks.md (``--no-doc`` leaves it alone). Not a timing: the seconds only say
what a rerun costs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from doc_section import add_doc_flag, write_section

ROOT = Path(__file__).resolve().parents[1]
KERNELS = Path("rnnkit/nn/fast/compiled")
TESTS = {"LSTM": "tests/nn/fast/compiled/test_compiled_lstm.py",
         "LN-LSTM": "tests/nn/fast/compiled/test_compiled_lstm.py",
         "GRU": "tests/nn/fast/compiled/test_compiled_gru.py",
         "LN-GRU": "tests/nn/fast/compiled/test_compiled_gru.py",
         "Elman": "tests/nn/fast/compiled/test_compiled_elman.py"}


#: what marks a change in a mutant's code: ``[[old => new]]``
CHANGE = re.compile(r"\[\[(.*?) => (.*?)\]\]", re.S)


@dataclass(frozen=True)
class Mutant:
    id: str
    cell: str  # which tests are run: TESTS[cell]
    file: str  # in rnnkit/nn/fast/compiled
    what: str
    code: str  # the code as it stands, with its change marked: [[old => new]] (one or more)

    def texts(self) -> tuple[str, str]:
        """(the code as it is, the code mutated), or ValueError if no change is marked."""
        if not CHANGE.search(self.code):
            raise ValueError(f"mutant {self.id}: no change marked [[old => new]] in its code")
        return (CHANGE.sub(lambda m: m.group(1), self.code),
                CHANGE.sub(lambda m: m.group(2), self.code))


#: one row per mutant: id, cell (its tests), file, what changes, the code with the change marked;
#: the rows of one file together, the files whose change rebuilds more last (a header rebuilds
#: every file that includes it)
MUTANTS = [Mutant(*row) for row in [
    ("lstm-sign", "LSTM", "lstm.cpp", "backward: + for - in tanh'(g) of the g gate",
     "(dct * i * (one [[- => +]] g * g)).store(dgr + 2 * H + k, cnt);"),
    ("lstm-mask", "LSTM", "lstm.cpp", "forward: the hidden mask (variational dropout) dropped",
     "const at::Tensor& x = [[masks.hidden_mask ? at::mul_out(h_in, h_prev, *masks.hidden_mask)\n"
     "                                              : h_prev => h_prev]];"),
    ("lstm-keep", "LSTM", "lstm.cpp", "forward: zoneout/lengths blend reads the keep of the step before",
     "at::lerp_out(dst, S.select(0, jp), fresh, keep->select(0, [[t => std::max<int64_t>(t - 1, 0)]]));"),
    ("gru-sign", "GRU", "gru.cpp", "backward: (n - h) for (h - n) in the z gate's gradient",
     "const Vec dpz = dh * ([[h - n => n - h]]) * z * (one - z);"),
    ("gru-reset", "GRU", "gru.cpp", "backward: the r factor of d gh_n dropped",
     "[[(dpn * r) => dpn]].store(dgh + 2 * H + k, cnt);"),
    ("gru-swap", "GRU", "gru.cpp", "forward: r computed from z's columns (gates swapped)",
     "const Vec r = vsigmoid(input([[k => H + k]], cnt) + recurrent([[k => H + k]], cnt));"),
    ("lngru-rstd", "LN-GRU", "gru.cpp", "saved rstd of a: every step reads step 0's",
     "s.rstd_a = ptr<scalar_t>(saved.rstd, [[t * B => 0]]);"),
    ("lngru-shift", "LN-GRU", "gru.cpp", "input layer norm: the shift (b_ih) dropped",
     "return [[p.shift ? g + Vec::loadu(p.shift + j, cnt) : g => g]];"),
    ("lngru-xhat", "LN-GRU", "gru.cpp", "input layer norm backward: xhat not scaled by rstd",
     "[[((Vec::loadu(s.gi + b * G + k, cnt) - mx) * rx) => (Vec::loadu(s.gi + b * G + k, cnt) - mx)]]"
     ".store(xh + k, cnt);"),
    ("elman-sign", "Elman", "elman.cpp", "backward: tanh' = 1 + h^2",
     "Vec::blendv(zero, one, y > zero) : one [[- => +]] y * y;"),
    ("elman-relu0", "Elman", "elman.cpp", "backward: relu' = 1 at h = 0 (>= for >)",
     "Vec::blendv(zero, one, y [[> => >=]] zero) : one - y * y;"),
    ("loop-mask", "Elman", "one_state_loop.h", "forward: the hidden mask dropped (GRU and Elman loop)",
     "const at::Tensor& x = [[masks.hidden_mask ? at::mul_out(h_in, h_prev, *masks.hidden_mask)\n"
     "                                            : h_prev => h_prev]];"),
    ("loop-keep", "GRU", "one_state_loop.h",
     "backward: the keep (zoneout, lengths) of the step before (GRU and Elman loop)",
     "masks.keep ? at::mul(dh, masks.keep->select(0, [[t => std::max<int64_t>(t - 1, 0)]])) : dh;"),
    ("lnlstm-lnback", "LN-LSTM", "vec_ops.h",
     "layer-norm backward (every cell's): + for - on the xhat term",
     "(r * (d - m1 [[- => +]] Vec::loadu(xhat + k, cnt) * m2)).store(dx + k, cnt);"),
    ("linear-mask", "LSTM", "linear.h",
     "backward through W_hh (every cell's): the hidden mask dropped",
     "[[if (hidden_mask) dh.mul_(*hidden_mask); => ]]"),
]]


def run_tests(copy: Path, test: str, env: dict, timeout: float) -> tuple[bool, str, float]:
    """(passed, the first failing test or the crash, seconds) for ``test`` against ``copy``."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", test, "-x", "-q", "-p", "no:cacheprovider",
             "-W", "ignore::DeprecationWarning"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s", time.perf_counter() - start
    seconds = time.perf_counter() - start
    out = done.stdout + done.stderr
    if done.returncode == 0:
        return True, "", seconds
    failed = [ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("FAILED ")]
    if failed:
        return False, failed[0].split(" - ")[0].split("::", 1)[-1], seconds
    if "build failed" in out or "error:" in out:
        return False, "the mutant did not build", seconds
    return False, f"exit status {done.returncode} (a crash)", seconds


def apply_all(copy: Path, mutants: list[Mutant]) -> dict[str, str]:
    """{id: its file's text mutated}; exits naming every mutant whose code is not in its file
    exactly once (a mutant that does not apply would be a check that cannot fail)."""
    changes, stale = {}, []
    for m in mutants:
        source = (copy / KERNELS / m.file).read_text(encoding="utf-8")
        try:
            old, new = m.texts()
        except ValueError as e:
            stale.append(str(e))
            continue
        if source.count(old) != 1:
            stale.append(f"mutant {m.id}: its code occurs {source.count(old)} times in {m.file} "
                         "(expected once)")
            continue
        changes[m.id] = source.replace(old, new)
        assert changes[m.id] != source, m.id  # old and new differ: the file really changes
    if stale:
        sys.exit("; ".join(stale) + ": update the mutants")
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the mutants whose id starts with this")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per test run")
    add_doc_flag(parser)
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if m.id.startswith(args.only)]
    with tempfile.TemporaryDirectory(prefix="rnnkit-mutants-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(ROOT / "src" / "rnnkit", copy / "rnnkit",
                        ignore=shutil.ignore_patterns("__pycache__"))
        env = {**os.environ, "PYTHONPATH": str(copy), "TORCH_EXTENSIONS_DIR": str(Path(tmp) / "ext"),
               "RNNKIT_COMPILED": "1"}
        changes = apply_all(copy, chosen)  # before any build: a mutant that does not apply stops it
        check = subprocess.run(
            [sys.executable, "-c",
             "import rnnkit, torch; print(rnnkit.__file__); print(torch.get_num_threads())"],
            env=env, capture_output=True, text=True, check=True)
        where, threads = check.stdout.splitlines()[-2:]
        assert where.startswith(str(copy)), where  # the copy is imported
        print(f"the unchanged copy: building and running {len(set(TESTS.values()))} test files...",
              file=sys.stderr, flush=True)
        for test in sorted(set(TESTS[m.cell] for m in chosen)):
            ok, why, _ = run_tests(copy, test, env, args.timeout)
            if not ok:
                sys.exit(f"the unchanged kernels fail {test} ({why}): fix that first")
        rows = []
        for m in chosen:
            path = copy / KERNELS / m.file
            source = path.read_text(encoding="utf-8")
            path.write_text(changes[m.id], encoding="utf-8")
            passed, why, seconds = run_tests(copy, TESTS[m.cell], env, args.timeout)
            path.write_text(source, encoding="utf-8")
            verdict = "**survived**" if passed else f"killed by `{why}`"
            print(f"{m.id}: {verdict} ({seconds:.0f} s)", file=sys.stderr, flush=True)
            rows.append(f"| `{m.id}` | {m.cell} | `{m.file}` | {m.what} | {verdict} | "
                        f"{seconds:.0f} |")
    survivors = sum("survived" in r for r in rows)
    table = "\n".join([
        f"{len(rows) - survivors} of {len(rows)} mutants killed. Each row: one change to the "
        "C++ of a copy of the package, rebuilt, then that cell's test file run with `-x` "
        "(seconds: rebuild plus tests).", "",
        "| mutant | cell | file | change | result | s |", "|---|---|---|---|---|---:|", *rows])
    print(table)
    write_section(__file__, table, threads=int(threads),
                  title="Mutation checks of the compiled kernels")
    if survivors:
        sys.exit(f"{survivors} mutant(s) survived: a test is missing")


if __name__ == "__main__":
    main()
