"""Starting the parts: the embedded database (embedded_db.py, started only from here), the
supervised local cluster of ``up``/``demo`` (cluster.py) and its child processes (processes.py)."""
