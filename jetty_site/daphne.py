"""daphne, with an access log that never writes a credential.

Gemini's clients send the API key in the query string (``?key=``), and daphne's access log writes each request's
path with its query. Run the web process as ``python -m jetty_site.daphne`` (same arguments as ``daphne``).
"""

from __future__ import annotations

import re
from typing import Any

from daphne import cli
from daphne.access import AccessLogGenerator

SECRET_QUERY = re.compile(r"([?&](?:key|api_key|apikey|token|access_token)=)[^&\s]*", re.I)


class RedactingAccessLog(AccessLogGenerator):
    def write_entry(self, host: Any, date: Any, request: str, *args: Any, **kwargs: Any) -> None:
        super().write_entry(host, date, SECRET_QUERY.sub(r"\1[redacted]", request), *args, **kwargs)


def main() -> None:
    cli.AccessLogGenerator = RedactingAccessLog
    cli.CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
