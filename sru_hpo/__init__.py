"""The ``sru-hpo`` command line, at the top: it composes the commands of every part, so no
library package imports another's CLI."""
