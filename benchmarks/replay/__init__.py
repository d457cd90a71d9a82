"""The replay benchmark: search strategies compared on tabulated and synthetic learning curves.

- ``problems.py``: what a trial observes (a learning curve per configuration and training seed)
  and how good its configuration truly is: the SRU-on-digits table (``benchmarks/tables/``,
  made by ``benchmarks/make_table.py``) and MFHartmann6 (Kandasamy et al. 2017).
- ``spaces.py``: one search space written for every optimizer (hyperopt, Optuna, ConfigSpace)
  and the coordinates the table's nearest-neighbour lookup uses.
- ``clock.py``: simulated workers on a virtual clock (an event loop of generators).
- ``ours.py``: sru-hpo's arms. The real study driver, scheduler, promotion and suggestion code
  (``service/orchestrator/driver.py``) runs on the in-memory store (``trials/memory.py``); only training is
  replaced by a look-up, by a worker that takes every decision the real one does
  (``workers/trial.py``).
- ``external.py``: Optuna (TPESampler + HyperbandPruner, ask/tell) and DEHB (ask/tell) on the same
  problems and clock.
- ``protocol.py``: equal budgets, anytime incumbent curves over paired seeds, paired tests.
"""
