"""The API's client: ``ApiClient`` (HTTP, api_client.py), the client commands of the CLI
(commands.py, compare_commands.py, cli_io.py) and the reports they write (report.py,
comparison_report.py). Imports neither FastAPI nor torch.

Nothing is imported here: ``sru-hpo worker`` and ``sru-hpo train`` load the commands' modules
(sru_hpo/cli.py composes them) and must not pay for httpx and the response models, which the
client commands import when they run (``from service.client.api_client import ApiClient``).
"""
