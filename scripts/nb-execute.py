"""Execute one notebook headless with nbclient (what `jupyter nbconvert --execute` runs).

usage: nb-execute.py IN.ipynb OUT.ipynb KERNEL TIMEOUT_S

Writes OUT.ipynb with every output, also when a cell fails (then the notebook holds the outputs up
to and including the failing cell), prints the failing cell's source, stderr and error to stderr,
and exits 1. The kernel runs in IN's folder, as in Jupyter. tslab reports a failing cell's message
on stderr rather than in the error reply, so the stream outputs are what tell why.
"""
import os
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    src, out, kernel, timeout = argv[1], argv[2], argv[3], int(argv[4])
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
