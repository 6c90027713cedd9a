"""Kafka client options from the settings: the broker, its security, the client id."""

from __future__ import annotations

import ssl
from typing import Any

import faust

from service.settings import Settings

__all__ = ["faust_broker_options", "kafka_client_options"]


def _ssl_context(s: Settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(s.kafka_ca_file) if s.kafka_ca_file else None)


def kafka_client_options(s: Settings) -> dict[str, Any]:
    """aiokafka's options for the broker, its security and this worker's client id."""
    options: dict[str, Any] = {
        "bootstrap_servers": s.kafka_bootstrap.split(","),
        "client_id": s.app_id,
        "security_protocol": s.kafka_security_protocol,
    }
    if s.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(s)
    if s.kafka_security_protocol.startswith("SASL"):
        password = s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password else ""
        options |= {
            "sasl_mechanism": s.kafka_sasl_mechanism,
            "sasl_plain_username": s.kafka_sasl_username or "",
            "sasl_plain_password": password,
        }
    return options


def faust_broker_options(s: Settings) -> dict[str, Any]:
    """The same security for Faust's clients (the labels agent and the producer)."""
    if s.kafka_security_protocol == "PLAINTEXT":
        return {}
    context = _ssl_context(s)
    if s.kafka_security_protocol == "SSL":
        return {"broker_credentials": context}
    password = s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password else ""
    return {
        "broker_credentials": faust.SASLCredentials(
            username=s.kafka_sasl_username or "",
            password=password,
            mechanism=s.kafka_sasl_mechanism,
            ssl_context=context if s.kafka_security_protocol == "SASL_SSL" else None,
        )
    }
