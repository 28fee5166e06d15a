"""README.md: the "Paper → code" table points at the right lines, so a student who opens a range finds the whole
mechanism. When code moves, this test fails and names the range to write instead;
`python tests/test_readme.py --fix` rewrites the ranges in README.md from the code. And every link to a record in
docs/RESULTS.md names one of its sections."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def top_level_spans(path: Path) -> dict[str, tuple[int, int]]:
    """name -> (first line, last line) of every top-level def, class and assignment of a module."""
    spans = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            spans[node.name] = (node.lineno, node.end_lineno)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in getattr(node, "targets", [getattr(node, "target", None)]):
                if isinstance(target, ast.Name):
                    spans[target.id] = (node.lineno, node.end_lineno)
    return spans


RANGE = r"`(\w+)` \((\d+)–(\d+)\)"  # `name` (first–last) in a row of the table


def paper_to_code_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Paper → code", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and ".py`:" in line]


def test_paper_to_code_line_ranges_match_the_code():
    rows = paper_to_code_rows()
    assert len(rows) >= 15, "the Paper → code table is missing or lost rows"
    wrong = []
    for row in rows:
        path = re.search(r"`(\w+\.py)`:", row).group(1)
        spans = top_level_spans(ROOT / path)
        for name, first, last in re.findall(RANGE, row):
            if name not in spans:
                wrong.append(f"{path}: {name} is not a top-level name")
            elif spans[name] != (int(first), int(last)):
                wrong.append(f"{path}: {name} is at {spans[name][0]}–{spans[name][1]}, README says {first}–{last}")
    assert not wrong, "\n".join(wrong)


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens.

    >>> anchor("Speed against TRL's `GRPOTrainer`"), anchor("Multi-agent inference (Table 4), untrained")
    ('speed-against-trls-grpotrainer', 'multi-agent-inference-table-4-untrained')
    """
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_to_the_results_record_names_one_of_its_sections():
    """README figures link to docs/RESULTS.md#<section>; a renamed section would leave the link dangling."""
    results = (ROOT / "docs" / "RESULTS.md").read_text()
    sections = {anchor(h) for h in re.findall(r"^#+ (.+)$", results, flags=re.M)}
    links = [(name, target) for name in ("README.md", "EXERCISES.md", "bench/README.md")
             for target in re.findall(r"RESULTS\.md#([\w-]+)", (ROOT / name).read_text())]
    links += [("docs/RESULTS.md", target) for target in re.findall(r"\]\(#([\w-]+)\)", results)]
    assert len(links) >= 8, "the README's results no longer link to their records"
    dangling = [f"{name} links to #{target}" for name, target in links if target not in sections]
    assert not dangling, "no such section in docs/RESULTS.md: " + "; ".join(dangling)


def fix_ranges() -> int:
    """Rewrite every `name` (first–last) of the Paper → code table from the code; returns how many changed."""
    text = (ROOT / "README.md").read_text()
    changed = 0
    for row in paper_to_code_rows():
        spans = top_level_spans(ROOT / re.search(r"`(\w+\.py)`:", row).group(1))

        def span(match):
            nonlocal changed
            first, last = spans.get(match.group(1), (int(match.group(2)), int(match.group(3))))
            changed += (first, last) != (int(match.group(2)), int(match.group(3)))
            return f"`{match.group(1)}` ({first}–{last})"
        text = text.replace(row, re.sub(RANGE, span, row))
    (ROOT / "README.md").write_text(text)
    return changed


if __name__ == "__main__":
    import sys
    if sys.argv[1:] != ["--fix"]:
        sys.exit("usage: python tests/test_readme.py --fix   (rewrites the Paper → code line ranges)")
    print(f"{fix_ranges()} line ranges rewritten in README.md")
