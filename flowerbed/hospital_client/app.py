"""The hospital's Flower ClientApp: one entry point for every kind of round.

Server-side rounds (FedAvg, FedProx) train and evaluate the model the
ServerApp sends (``server_rounds``); gossip rounds mix sealed payloads from
neighbours into the site's own model and seal the result for the next ones
(``gossip_round``). Which one a train message asks for is in its content.

A deployed ClientApp is a fresh process per message, so this module loads
only what every message needs (config, keys, ledger, guard). The round
handlers, which bring the training stack (torch's networks, MONAI, Opacus),
are imported by the handlers that train or evaluate: a roll call or a query
answers without paying for them (``tests/test_layout.py`` holds it to that).
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from flowerbed.config import Federation, SiteSettings
from flowerbed.hospital_client.audit_mod import make_audit_mod
from flowerbed.hospital_client.identity import resolve_site, roll_call_answer
from flowerbed.hospital_client.site_errors import make_site_errors_mod
from flowerbed.hospital_client.turn import Act, honest
from flowerbed.protocol import records as R


def make_client_app(
    federation_file: str | None = None,
    homes: str | None = None,
    ledgers: str | None = None,
    log_file: str | None = None,
    act: Act = honest,
) -> ClientApp:
    """A ClientApp bound to ``federation_file``, or reading it from the run config if None.

    ``homes`` is the folder under which each site keeps its own model
    (``homes/<site>/model.pt``) in gossip runs, ``ledgers`` the folder of
    the sites' ledgers (``ledgers/<site>.jsonl``); a deployed site names its
    own with the node config keys ``home`` and ``ledger``. Every message
    passes the site's ledger and egress guard (``audit_mod``); any failure
    answers as the site's own one-line error (``site_errors``), its
    traceback going to ``log_file`` if given. ``act`` is what a site does
    with its turn: a deployed one trains honestly; the simulation puts its
    simulated faults here (``flowerbed.faults.behave``).
    """

    def site_of(context: Context) -> tuple[Federation, SiteSettings]:
        path = federation_file or context.run_config.get(R.FEDERATION_FILE)
        return resolve_site(context, None if path is None else str(path))

    app = ClientApp(
        mods=[make_site_errors_mod(site_of, log_file), make_audit_mod(site_of, ledgers, homes)]
    )

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        from flowerbed.hospital_client.gossip_round import gossip_round
        from flowerbed.hospital_client.server_rounds import train_round

        federation, site = site_of(context)
        if R.INBOX in msg.content:
            content = gossip_round(msg, context, federation, site, homes, act)
        else:
            content = train_round(msg, context, federation, site, act)
        return Message(content, reply_to=msg)

    @app.query(R.IDENTITY_QUERY)
    def _identity(msg: Message, context: Context) -> Message:
        federation, site = site_of(context)
        return Message(
            roll_call_answer(context, federation, site, msg.content, homes), reply_to=msg
        )

    @app.evaluate()
    def _evaluate(msg: Message, context: Context) -> Message:
        from flowerbed.hospital_client.server_rounds import evaluate_round

        federation, site = site_of(context)
        return Message(evaluate_round(msg, context, federation, site), reply_to=msg)

    return app


app = make_client_app()
