"""One JSON object per log line, whatever is logged: a traceback goes into a field, never as
raw lines between the JSON ones; ``configure_logging`` puts every logger on it."""

from __future__ import annotations

import json
import logging
import sys


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{") and not record.exc_info and "\n" not in message:
            return message  # already a JSON line (the request log): written as is
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
        }
        if record.exc_info:
            line["error"] = repr(record.exc_info[1])
            line["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, separators=(",", ":"))


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    ours = logging.getLogger("ocigate")
    ours.handlers[:] = [handler]
    ours.setLevel(level.upper())
    ours.propagate = False
    # Libraries' own messages (asyncio's unretrieved task errors, …) and Python warnings get
    # the same JSON lines.
    logging.getLogger().handlers[:] = [handler]
    logging.captureWarnings(True)
