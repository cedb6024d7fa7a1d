"""A site's failure as one line: its name and its own error, never a traceback.

Whatever a site's round raises (its data, its model, its budget, a refused
egress) becomes an error reply whose reason is ``SITE: message``, coded
``protocol.records.SITE_ERROR``, so the coordinator can print it as it stands and
tell it apart from Flower's own errors (an unapproved app bundle, a node
gone). The traceback goes to the site's own log, where its operator looks.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from logging import ERROR

from flwr.app import Context, Error, Message
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.logger import log

from flowerbed.errors import FlowerbedError
from flowerbed.hospital_client.audit_mod import SiteOf
from flowerbed.protocol import records as R

LONGEST_REASON = 400  # characters: one line on a console, even for a foreign exception


def one_line(error: BaseException) -> str:
    """The error's own message on one line: ours as written, anyone else's with its type."""
    text = " ".join(str(error).split())
    if not isinstance(error, FlowerbedError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= LONGEST_REASON else text[: LONGEST_REASON - 1] + "…"


def make_site_errors_mod(site_of: SiteOf, log_file: str | None = None) -> Callable:
    """The outermost mod of the ClientApp: turns any exception into a one-line error reply.

    Every failure must reach the coordinator, so it catches them all. The
    traceback goes to Flower's log (a SuperNode's own), and to ``log_file``
    when given (a simulation's ``RUN_DIR/flower.log``: its sites run in Ray's
    workers, whose output the console does not show).
    """

    def site_errors_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        try:
            return call_next(msg, context)
        except Exception as error:
            name = _name(site_of, context)
            log(ERROR, "site %s: %s failed", name, msg.metadata.message_type, exc_info=error)
            if log_file is not None:
                with open(log_file, "a") as out:
                    out.write(f"site {name}: {msg.metadata.message_type} failed\n")
                    out.writelines(traceback.format_exception(error))
            reason = R.site_error(name, one_line(error))
            return Message(Error(code=R.SITE_ERROR, reason=reason), reply_to=msg)

    return site_errors_mod


def _name(site_of: SiteOf, context: Context) -> str:
    """The site's name, or its node id when its own config is what failed."""
    try:
        return site_of(context)[1].name
    except Exception:
        return f"node {context.node_id}"
