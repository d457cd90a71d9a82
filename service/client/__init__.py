"""The API's client: ``ApiClient`` (HTTP, api_client.py), the client commands of the CLI
(commands.py, compare_commands.py, cli_io.py) and the reports they write (report.py,
comparison_report.py). Imports neither FastAPI nor torch."""

from service.client.api_client import ApiClient, ApiError

__all__ = ["ApiClient", "ApiError"]
