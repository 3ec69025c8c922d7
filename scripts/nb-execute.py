"""Execute one notebook headless with nbclient (what `jupyter nbconvert --execute` runs).

usage: nb-execute.py IN.ipynb OUT.ipynb KERNEL TIMEOUT_S [OUT.html]

Writes OUT.ipynb with every output, also when a cell fails (then the notebook holds the outputs up
to and including the failing cell), prints the failing cell's source, stderr and error to stderr,
and exits 1. The kernel runs in IN's folder, as in Jupyter, with this process's environment (so
TFLENS_FORBID_SYNC_READBACK reaches it). tslab reports a failing cell's message on stderr rather
than in the error reply, so the stream outputs are what tell why.

With OUT.html, a notebook that ran is also exported as a standalone HTML report (nbconvert's
HTMLExporter, as `jupyter nbconvert --to html`), with a style that wraps long code lines and long
output lines instead of letting them run off the page.
"""
import os
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

# Long lines wrap (code cells, printed output, tracebacks) instead of overflowing the report's column.
WRAP_CSS = """<style id="tflens-report-wrap">
.jp-InputArea-editor pre, .highlight pre, .jp-OutputArea-output pre, div.output_area pre, div.input_area pre {
  white-space: pre-wrap; overflow-wrap: break-word;
}
</style>
"""


def write_html(nb, path):
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    head_end = body.find("</head>")
    if head_end < 0:
        raise RuntimeError("nbconvert wrote no </head>: cannot add the report style")
    with open(path, "w", encoding="utf-8") as f:
        f.write(body[:head_end] + WRAP_CSS + body[head_end:])


def main(argv):
    if len(argv) not in (5, 6):
        print(__doc__, file=sys.stderr)
        return 2
    src, out, kernel, timeout = argv[1], argv[2], argv[3], int(argv[4])
    html = argv[5] if len(argv) == 6 else None
    nb = nbformat.read(src, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(src))}},
    )
    current = {"index": None}
    execute_cell = client.async_execute_cell

    async def tracked(cell, cell_index, *args, **kwargs):
        current["index"] = cell_index
        return await execute_cell(cell, cell_index, *args, **kwargs)

    client.async_execute_cell = tracked
    ok = True
    try:
        client.execute()
    except CellExecutionError:
        ok = False
    except Exception as e:  # kernel died, timeout, ...
        ok = False
        print(f"{src}: {type(e).__name__}: {e}", file=sys.stderr)
    nbformat.write(nb, out)
    if ok:
        if html:
            write_html(nb, html)
        return 0
    i = current["index"]
    if i is not None:
        cell = nb.cells[i]
        print(f"{src}: cell {i} failed:\n--- source\n{cell.source}\n--- output", file=sys.stderr)
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                print(o.get("text", ""), end="", file=sys.stderr)
            elif o.get("output_type") == "error":
                print(f"{o.get('ename', '')}: {o.get('evalue', '')}", file=sys.stderr)
                print("\n".join(o.get("traceback", [])), file=sys.stderr)
        print("---", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
