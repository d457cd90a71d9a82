"""The orchestrator: what moves a study forward. One driver per study (driver.py) asks the
suggester (suggest.py, TPE) and the search rules (search.py: budget, ASHA, Hyperband) for the
next trials, and the manager (drivers.py) runs the drivers, inside the API or on its own
(``sru-hpo orchestrate``). It never imports FastAPI or torch."""
