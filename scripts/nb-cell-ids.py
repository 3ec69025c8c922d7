"""Give every notebook cell an id (nbformat 4.5), or check that each has one.

usage: nb-cell-ids.py [--check] NOTEBOOK.ipynb...

Without --check: a cell without a valid id gets one: a markdown cell the slug of its first line,
a code cell the slug of the markdown above it + "-code" (made unique in the notebook); nbformat_minor is raised to 5. Only ids and the
format version change; the file keeps its JSON layout (indent 1, key order, escaping) otherwise.
With --check: lists the notebooks whose cells lack ids, repeat one or hold an invalid one, and exits 1.
"""
import json
import re
import sys

ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def words_of(text, limit=32):
    """A slug of the first non-empty line, cut at a word boundary."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    words = re.sub(r"[^a-z0-9]+", "-", first.lower()).strip("-")
    return words if len(words) <= limit else words[:limit].rsplit("-", 1)[0]


def base_ids(cells):
    """Markdown cells: a slug of their first line; code cells: the slug of the markdown above + "-code"."""
    out, above = [], "setup"
    for i, c in enumerate(cells):
        if c["cell_type"] == "markdown":
            above = words_of("".join(c.get("source", []))) or f"cell-{i}"
            out.append(above)
        else:
            out.append(f"{above}-code")
    return out


def problems(nb):
    seen = set()
    out = []
    for i, c in enumerate(nb["cells"]):
        cid = c.get("id")
        if not isinstance(cid, str) or not ID_RE.match(cid):
            out.append(f"cell {i}: {'no id' if cid is None else f'invalid id {cid!r}'}")
        elif cid in seen:
            out.append(f"cell {i}: id {cid!r} repeated")
        seen.add(cid)
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        out.append(f"nbformat {nb.get('nbformat')}.{nb.get('nbformat_minor')} (cell ids need 4.5)")
    return out


def with_id(cell, cid):
    """The cell with its id placed after cell_type (other keys keep their order)."""
    out = {}
    for k, v in cell.items():
        if k == "id":
            continue
        out[k] = v
        if k == "cell_type":
            out["id"] = cid
    return out


def fix(path):
    text = open(path, encoding="utf-8").read()
    nb = json.loads(text)
    ascii_only = json.dumps(nb, indent=1, ensure_ascii=True) + "\n" == text
    used = {c.get("id") for c in nb["cells"] if isinstance(c.get("id"), str) and ID_RE.match(c["id"])}
    seen = set()
    bases = base_ids(nb["cells"])
    for i, c in enumerate(nb["cells"]):
        cid = c.get("id")
        if isinstance(cid, str) and ID_RE.match(cid) and cid not in seen:
            seen.add(cid)
            continue
        base = bases[i]
        cid, n = base, 2
        while cid in used or cid in seen:
            cid, n = f"{base}-{n}", n + 1
        nb["cells"][i] = with_id(c, cid)
        seen.add(cid)
        used.add(cid)
    nb["nbformat"], nb["nbformat_minor"] = 4, max(5, nb.get("nbformat_minor", 0))
    new = json.dumps(nb, indent=1, ensure_ascii=ascii_only) + "\n"
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
        print(f"{path}: ids set")


def main(argv):
    check = "--check" in argv
    paths = [a for a in argv[1:] if a != "--check"]
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    bad = 0
    for p in paths:
        if check:
            found = problems(json.load(open(p, encoding="utf-8")))
            for msg in found:
                print(f"{p}: {msg}", file=sys.stderr)
            bad += bool(found)
        else:
            fix(p)
    if bad:
        print(f"{bad} notebook(s) need cell ids: python3 scripts/nb-cell-ids.py NOTEBOOK.ipynb sets them", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
