"""The HTTP API: the FastAPI app (app.py), one router per resource (routes/), security, error
handling and the dashboard's static files. It never imports torch."""
