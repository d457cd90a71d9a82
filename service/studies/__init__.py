"""What a study and a comparison are: the request schemas and their validation (schemas.py,
comparisons.py), the public views (views.py) and the analysis of finished trials (analysis.py).
Shared by the API and the orchestrator; imports neither FastAPI nor torch."""
