"""``python -m sru_hpo``: the same as the ``sru-hpo`` command."""

from sru_hpo.cli import main

main()
