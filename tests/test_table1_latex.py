"""Table 1's LaTeX: bodies to \\input into a paper, and the standalone document holding them."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from harness import store, table1

RESULTS = store.REPO_ROOT / "results"
BODIES = ("table1-body.tex", "table1-published-body.tex", "table1-paper-body.tex")
MODELS = ["gru4rec", "caser", "sasrec", "ips", "adaranker", "cl4srec", "diffrec", "dreamrec"]
DATASETS = ["yc", "ks", "zhihu", "ml-100k"]
needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)")


def tables() -> list[table1.Table]:
    """Every model on every dataset but ks (data missing), with wide numbers; DreamRec far
    below the baselines, so its cells carry both marks."""
    rng = np.random.default_rng(0)
    sequences = {d: np.repeat(np.arange(30), 3) for d in DATASETS}  # 30 sequences of 3 rows
    out = []
    for protocol in ("validation", "published"):
        cells = {}
        for d in DATASETS[:1] + DATASETS[2:]:
            for m in MODELS:
                c = table1.Cell(d, m, seeds=[0, 1, 2, 3, 4], n_items=1000)
                level = 0.01 if m == "dreamrec" else 0.2
                c.values = {k: list(level + 0.02 * rng.random(5)) for k in table1.METRICS}
                c.values["coverage@20"] = [0.5] * 5
                c.row_means = {k: np.full(90, level) for k in table1.METRICS}
                cells[(d, m)] = c
        t = table1.Table(protocol, DATASETS, MODELS, cells, {}, {"ks": "file train_data.df is missing"})
        t.set_data({}, {}, sequences)
        out.append(t)
    return out


def tabular_rows(body: str) -> list[str]:
    """The model rows of a body: the lines between the header's \\midrule and the next rule."""
    lines = body.splitlines()
    start = lines.index(r"\midrule") + 1
    end = next(i for i in range(start, len(lines)) if lines[i] in (r"\midrule", r"\bottomrule"))
    return lines[start:end]


def check_structure(body: str, n_rows: int, n_cols: int) -> None:
    assert body.isascii() and "<" not in body.replace("$<$", "")
    assert body.count("{") == body.count("}")
    depth = 0
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    rows = tabular_rows(body)
    assert len(rows) == n_rows
    assert all(r.count(" & ") == n_cols - 1 and r.endswith(r" \\") for r in rows)
    header = [x for x in body.splitlines() if x.startswith("Model &")]
    assert len(header) == 1 and "model" not in body.replace("Model &", "").split(r"\midrule")[0]


def test_bodies_have_one_row_per_model_and_the_paper_layout():
    ts = tables()
    bodies = table1.latex_bodies(ts)
    assert sorted(bodies) == sorted(BODIES)
    for name in BODIES[:2]:
        check_structure(bodies[name], len(MODELS), 1 + 2 * len(DATASETS))
        assert "HR@20 & NDCG@20 & HR@20" in bodies[name]
    # the paper's cells: its datasets (no ml-100k) and models
    check_structure(bodies["table1-paper-body.tex"], len(MODELS), 1 + 2 * 3)
    assert "ml-100k" not in bodies["table1-paper-body.tex"]
    body = bodies["table1-body.tex"]
    assert body.count(r"\textbf{") == 2 * 3 and body.count(r"\underline{") == 2 * 3  # per column
    assert r"$\pm$" in body and "IPS$^\\ddagger$" in body and body.count(r"$^{*\dagger}$") == 6
    ks = [r.split(" & ")[3:5] for r in tabular_rows(body)]
    assert all(c == ["--", "--"] for c in ks)  # data missing
    standalone = table1.latex(ts)
    assert standalone.isascii()
    for text in bodies.values():
        assert text.rstrip("\n") in standalone


def test_notes_escape_what_latex_would_misprint():
    assert table1._tex_escape("p < 0.05, |x|, 5 % of a_b") == r"p $<$ 0.05, $|$x$|$, 5 \% of a\_b"
    assert table1._tex_escape("± † ‡ — ×") == r"$\pm$ $^\dagger$ $^\ddagger$ --- $\times$"
    note = table1.latex(tables())
    assert "p $<$ 0.05" in note and "$|$sum of the differences$|$" in note


def test_the_committed_latex_files_are_the_bodies_and_ascii():
    tex = (RESULTS / "table1.tex").read_text()
    assert tex.isascii() and "<" not in tex.replace("$<$", "")
    for name in BODIES:
        body = (RESULTS / name).read_text()
        assert body.isascii() and body.rstrip("\n") in tex
        assert len(tabular_rows(body)) == len(MODELS)


def pdflatex(tex: str, folder, cwd) -> str:
    """Compile ``folder/tex`` with the working directory ``cwd``; the log's text."""
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                          f"-output-directory={folder}", str(folder / tex)], cwd=cwd,
                         capture_output=True, text=True, timeout=120)
    log = (folder / tex).with_suffix(".log").read_text(errors="replace")
    assert run.returncode == 0, log[-2000:]
    return log


def check_log(log: str) -> None:
    assert not re.search(r"^! ", log, re.M), log
    assert "Overfull" not in log, [x for x in log.splitlines() if "Overfull" in x]
    assert "Output written on" in log


@needs_pdflatex
def test_the_standalone_document_compiles_without_overfull_boxes(tmp_path):
    """Both the committed table1.tex and one with every model on every dataset compile with no
    error and no overfull box, from another folder than theirs."""
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    shutil.copy(RESULTS / "table1.tex", tmp_path / "committed.tex")
    check_log(pdflatex("committed.tex", tmp_path, elsewhere))
    table1.write(tmp_path, tables())
    check_log(pdflatex("table1.tex", tmp_path, elsewhere))


@needs_pdflatex
def test_a_paper_inputs_the_bodies_in_one_column(tmp_path):
    """A two-column paper \\inputs each body into a one-column table: scaled to the column."""
    table1.write(tmp_path, tables())
    floats = "\n".join(rf"\begin{{table}}\centering\input{{{name}}}\caption{{x}}\end{{table}}"
                       for name in BODIES)
    (tmp_path / "paper.tex").write_text(
        "\\documentclass[twocolumn]{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        f"\\begin{{document}}\n{floats}\nText.\n\\end{{document}}\n")
    check_log(pdflatex("paper.tex", tmp_path, tmp_path))
