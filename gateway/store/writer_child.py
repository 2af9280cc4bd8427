"""Entry point of the store's writer process: ``python -m gateway.store.writer_child FD``.

A module of its own (not imported by ``gateway.store``) so that ``-m`` runs it fresh.
"""

import sys

from gateway.store.writer_process import child_main

if __name__ == "__main__":
    child_main(int(sys.argv[1]))
