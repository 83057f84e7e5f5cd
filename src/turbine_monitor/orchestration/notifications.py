"""Alert notifications: a Prefect automation that calls a webhook for each
`turbine-monitor.alert.opened` event (an alert opened live, see `flows.inference_flow`).

Everything comes from `prefect.yml` (`notifications:`). The webhook's URL is never in a
committed file: it comes from the environment variable `url_env`, or else from
`conf/<env>/credentials.yml` (key `credentials_key`; `conf/local/` is git-ignored), and is
then saved as the Prefect Webhook block `webhook_block` (its URL a secret); with neither,
a Webhook block of that name already saved (made in Prefect's UI) is used. With no
webhook, there is no automation (one left from before is deleted) and one log line says
so.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from uuid import UUID

from kedro.config import MissingConfigException
from prefect import get_client
from prefect.automations import AutomationCore, CallWebhook, EventTrigger, Posture
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import SyncPrefectClient
from prefect.exceptions import ObjectNotFound

from turbine_monitor.orchestration.flows import ALERT_OPENED, prefect_config
from turbine_monitor.project import load_config

logger = logging.getLogger(__name__)


def webhook_url(config: dict[str, Any], conf_source: str | None = None, env: str | None = None) -> str | None:
    """The webhook URL from the environment variable `config["url_env"]`, else from the
    credentials (`config["credentials_key"]`), else None."""
    if url := os.environ.get(config["url_env"]):
        return url
    try:
        credentials = load_config("credentials", conf_source, env)
    except MissingConfigException:  # no credentials file
        return None
    return credentials.get(config["credentials_key"]) or None


def webhook_block_id(config: dict[str, Any], url: str | None, client: SyncPrefectClient) -> UUID | None:
    """The id of the Webhook block `config["webhook_block"]`: saved (or overwritten) with
    `url` if one is given, else the one already saved, else None."""
    if url:
        return Webhook(url=url, headers={"Content-Type": "application/json"}).save(
            config["webhook_block"], overwrite=True)
    try:
        return client.read_block_document_by_name(config["webhook_block"], block_type_slug="webhook").id
    except ObjectNotFound:
        return None


def alert_automation(config: dict[str, Any], block_id: UUID) -> AutomationCore:
    """The automation: each `turbine-monitor.alert.opened` event of a turbine calls the
    webhook block `block_id` with the body `config["payload_template"]` (Jinja, rendered
    by the server with the triggering `event`)."""
    return AutomationCore(
        name=config["automation_name"],
        description=f"A message to the webhook block '{config['webhook_block']}' for each alert opened "
                    f"live ({ALERT_OPENED}); made from prefect.yml (notifications) by the deployments' "
                    f"registration: edits here are overwritten.",
        trigger=EventTrigger(expect={ALERT_OPENED},
                             match={"prefect.resource.id": "turbine-monitor.turbine.*"},
                             posture=Posture.Reactive, threshold=1, within=0),
        actions=[CallWebhook(block_document_id=block_id, payload=config["payload_template"])],
    )


def save_automation(client: SyncPrefectClient, automation: AutomationCore) -> UUID:
    """Create `automation`, or update the one of its name (deleting any duplicate)."""
    existing = client.read_automations_by_name(automation.name)
    if not existing:
        return client.create_automation(automation)
    client.update_automation(existing[0].id, automation)
    for duplicate in existing[1:]:
        client.delete_automation(duplicate.id)
    return existing[0].id


def register_notifications(conf_source: str | None = None, env: str | None = None) -> UUID | None:
    """Create or update (by name: there is then exactly one) the alert automation on the
    server of PREFECT_API_URL, from `prefect.yml` (`notifications:`) read from
    `conf_source`/`env`; with no webhook configured, or notifications disabled, delete it
    if it exists and log one line saying so. Returns the automation's id, or None."""
    config = prefect_config(conf_source, env)["notifications"]
    name = config["automation_name"]
    with get_client(sync_client=True) as client:
        url = webhook_url(config, conf_source, env)
        block_id = webhook_block_id(config, url, client) if config["enabled"] else None
        existing = client.read_automations_by_name(name)
        if block_id is None:
            for automation in existing:
                client.delete_automation(automation.id)
            why = ("prefect.notifications.enabled is false" if not config["enabled"] else
                   f"no webhook configured: set {config['url_env']}, or "
                   f"`{config['credentials_key']}` in conf/local/credentials.yml, or save a Webhook "
                   f"block named '{config['webhook_block']}'; then register the deployments again")
            logger.warning("Alert notifications are off (%s).", why)
            return None
        automation_id = save_automation(client, alert_automation(config, block_id))
    logger.info("Alert notifications on: automation '%s' calls the webhook block '%s' for each alert "
                "opened live.", name, config["webhook_block"])
    return automation_id
