"""Building the worker from its settings: nothing at import, clear refusals, the parts wired
(no broker or Redis is contacted to build)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from fraudcore import SPEC
from service.app import StartupError, build_worker, main
from service.kafka import faust_broker_options, kafka_client_options
from service.keys import KeyLayout
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def settings(tmp_path: Path, **values: object) -> Settings:
    values = {"env": "development", "model_dir": ROOT / "models", "data_dir": tmp_path / "w",
              **values}
    return Settings(**values)  # type: ignore[arg-type]


def test_importing_the_service_builds_nothing(tmp_path: Path) -> None:
    # A fresh interpreter, somewhere without models: importing every module must not read
    # the settings, make the data directory, load a model or exit.
    data_dir = tmp_path / "data"
    code = "import service.app, service.agents, service.pipeline, service.web; print('imported')"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={"FRAUD_DATA_DIR": str(data_dir), "FRAUD_PARTITIONS": "not a number"},
    )
    assert (out.returncode, out.stdout) == (0, "imported\n"), out.stderr
    assert not data_dir.exists()


def test_the_worker_is_built_with_its_parts_wired(tmp_path: Path) -> None:
    s = settings(tmp_path, app_id="unit-app", topic_labels="unit-labels", fail_policy="open")
    worker = build_worker(s)
    assert worker.app.conf.id == "unit-app-labels"
    assert worker.models.model.version == (ROOT / "models" / "current").read_text().strip()
    assert worker.pipeline.options.fail_policy == "open"
    assert worker.pipeline.topics.dlq == s.topic_dlq
    [agent] = list(worker.app.agents.values())
    assert list(agent.channel.topics) == ["unit-labels"]
    assert (tmp_path / "w").is_dir()
    routes = {view.view_path for view in worker.app.web.views.values()}
    assert {"/health", "/metrics"} <= routes


def test_the_public_development_secret_is_refused_outside_development(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="FRAUD_CARD_KEY_SECRET is not set"):
        build_worker(settings(tmp_path, env="production"))
    own = settings(tmp_path, env="production", card_key_secret=SecretStr("s3cret-of-our-own"))
    assert build_worker(own).store.card_tag("4111") != build_worker(
        settings(tmp_path)
    ).store.card_tag("4111")


def test_a_missing_model_refuses_to_start(tmp_path: Path) -> None:
    s = settings(tmp_path, model_dir=tmp_path / "no-models", data_dir=tmp_path)
    with pytest.raises(StartupError, match="make train"):
        build_worker(s)


def test_a_redis_ca_file_needs_a_tls_url(tmp_path: Path) -> None:
    s = settings(tmp_path, redis_ca_file=tmp_path / "ca.pem")
    with pytest.raises(StartupError, match="rediss://"):
        build_worker(s)


def test_main_says_which_setting_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_PARTITIONS", "0")
    with pytest.raises(SystemExit) as exit_:
        main()
    message = str(exit_.value.code)
    assert message.startswith("fraud worker refuses to start: invalid FRAUD_* settings")
    assert "partitions" in message


def test_kafka_options_carry_the_security_settings(tmp_path: Path) -> None:
    plain = kafka_client_options(settings(tmp_path))
    assert plain == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "client_id": "fraud-scorer",
        "security_protocol": "PLAINTEXT",
    }
    assert faust_broker_options(settings(tmp_path)) == {}
    sasl = settings(
        tmp_path,
        kafka_bootstrap="a:9093,b:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr("pw"),
    )
    options = kafka_client_options(sasl)
    assert options["bootstrap_servers"] == ["a:9093", "b:9093"]
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "svc")
    assert options["sasl_plain_password"] == "pw"
    assert options["ssl_context"] is not None
    credentials = faust_broker_options(sasl)["broker_credentials"]
    assert (credentials.username, credentials.password) == ("svc", "pw")
    assert "ssl_context" in kafka_client_options(settings(tmp_path, kafka_security_protocol="SSL"))


def test_keys_of_one_card_share_a_slot_and_hide_the_card_id() -> None:
    keys = KeyLayout(card_key_secret=b"k", prefix="p")
    card = keys.card("4111111111111111")
    assert keys.root == f"p:v{SPEC.version}"
    assert "4111111111111111" not in card.tx + card.val
    tag = card.tx[card.tx.index("{") : card.tx.index("}") + 1]
    assert card.val.startswith(card.tx.removesuffix(":tx")) and tag in card.val
    assert len(tag) == 34  # 32 hex digits of HMAC-SHA256
    other_secret = KeyLayout(card_key_secret=b"other", prefix="p").card("4111111111111111")
    assert other_secret.tx != card.tx
    terminal = keys.terminal("T-1")
    assert {terminal.tx, terminal.fraud, terminal.known} == {
        f"p:v{SPEC.version}:t:{{T-1}}:tx",
        f"p:v{SPEC.version}:t:{{T-1}}:fraud",
        f"p:v{SPEC.version}:t:{{T-1}}:known",
    }
    assert keys.transaction_id("tx-9") == f"p:v{SPEC.version}:id:{{tx-9}}"
    assert keys.pattern("card") == f"p:v{SPEC.version}:card:*"
    assert keys.pattern() == f"p:v{SPEC.version}:*"

