"""Redis Cluster and Sentinel, the pure parts: which slot a key is in, terminal tags that
keep a terminal's keys on one slot, the marker's order, and the store each mode builds
from its settings (nothing is contacted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from redis.crc import key_slot

from service.cluster import SLOTS, ClusterStore, _worst, hash_tag, slot_of, slot_tags
from service.keys import KeyLayout, terminal_tag
from service.lineage import Lineage
from service.settings import Settings, StartupError
from service.state import RedisStore
from service.stores import SentinelStore, build_store, check_redis

ROOT = Path(__file__).resolve().parents[2]
ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)


@given(ids)
def test_the_slot_of_a_key_is_redis_own(text: str) -> None:
    for key in (text, f"p:v1:t:{{{text}}}:tx", f"{{{text}", f"a}}{text}{{b}}", f"{text}{{}}x"):
        assert slot_of(key) == key_slot(key.encode())


def test_hash_tags_follow_the_first_brace_pair() -> None:
    assert hash_tag("p:{abc}:x") == b"abc"
    assert hash_tag("p:{}x}:tx") == b"p:{}x}:tx"  # empty tag: the whole key
    assert hash_tag("p:{a{b}}") == b"a{b"
    assert hash_tag("no tag") == b"no tag"


@given(ids)
def test_a_terminal_keeps_its_keys_on_one_slot_whatever_its_id(terminal: str) -> None:
    keys = KeyLayout(card_key_secret=b"k").terminal(terminal)
    assert len({slot_of(keys.tx), slot_of(keys.fraud), slot_of(keys.known)}) == 1
    assert "{" not in terminal_tag(terminal) and "}" not in terminal_tag(terminal)


@given(ids, ids)
def test_two_terminals_never_share_a_tag(a: str, b: str) -> None:
    assert (terminal_tag(a) == terminal_tag(b)) == (a == b)


def test_ids_without_braces_or_percent_keep_their_keys() -> None:
    assert terminal_tag("T-1 shop/42") == "T-1 shop/42"
    assert terminal_tag("}x") == "%7Dx"
    assert terminal_tag("50%") == "50%25"


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="one slot"):
        KeyLayout(card_key_secret=b"k", prefix="{fraud}")


def test_every_slot_has_a_marker_tag_of_its_own() -> None:
    tags = slot_tags()
    assert len(tags) == SLOTS
    assert [key_slot(t.encode()) for t in tags] == list(range(SLOTS))


def test_the_marker_that_says_least_wins() -> None:
    complete = Lineage("a", 100.0, True)
    partial_old = Lineage("b", 200.0, False)
    partial_new = Lineage("c", 300.0, False)
    assert _worst([complete, partial_old, partial_new]) == partial_new
    assert _worst([complete, partial_old]) == partial_old
    assert _worst([complete]) == complete
    assert _worst([Lineage("x", 5.0, True), Lineage("y", 5.0, True)]) == Lineage("x", 5.0, True)


def settings(tmp_path: Path, **values: object) -> Settings:
    values = {"env": "development", "model_dir": ROOT / "models", "data_dir": tmp_path, **values}
    return Settings(**values)  # type: ignore[arg-type]


def test_each_mode_builds_its_store(tmp_path: Path) -> None:
    single = build_store(settings(tmp_path))
    assert type(single) is RedisStore and single.wait_replicas == 0

    cluster = build_store(settings(
        tmp_path, redis_mode="cluster",
        redis_url=SecretStr("redis://app:p%40ss@10.0.0.1:7000,redis://10.0.0.2:7001"),
    ))
    assert isinstance(cluster, ClusterStore) and cluster.wait_replicas == 1
    seeds = {(n.host, n.port) for n in cluster.cluster.nodes_manager.startup_nodes.values()}
    assert seeds == {("10.0.0.1", 7000), ("10.0.0.2", 7001)}
    assert cluster.cluster.connection_kwargs["username"] == "app"
    assert cluster.cluster.connection_kwargs["password"] == "p@ss"

    sentinel = build_store(settings(
        tmp_path, redis_mode="sentinel", redis_sentinel_master="fraud", redis_wait_replicas=0,
        redis_url=SecretStr("rediss://:pw@s1:26379,rediss://s2:26380"),
        redis_sentinel_password=SecretStr("sentinel-pw"),
    ))
    assert isinstance(sentinel, SentinelStore) and sentinel.wait_replicas == 0
    pool = sentinel.redis.connection_pool
    assert pool.service_name == "fraud"  # type: ignore[attr-defined]
    assert pool.connection_kwargs["password"] == "pw"
    assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
    manager = pool.sentinel_manager  # type: ignore[attr-defined]
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs[
        "port"]) for s in manager.sentinels] == [("s1", 26379), ("s2", 26380)]
    assert manager.sentinels[0].connection_pool.connection_kwargs["password"] == "sentinel-pw"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis_url": SecretStr("redis://a:1,redis://b:2")}, "FRAUD_REDIS_MODE=cluster"),
        ({"redis_mode": "sentinel", "redis_url": SecretStr("redis://s:26379")},
         "FRAUD_REDIS_SENTINEL_MASTER"),
        ({"redis_mode": "cluster", "redis_url": SecretStr("unix:///tmp/redis.sock")},
         "not a redis://host:port"),
        ({"redis_key_prefix": "{fraud}"}, "FRAUD_REDIS_KEY_PREFIX"),
        ({"redis_mode": "cluster", "redis_ca_file": Path("/ca.pem"),
          "redis_url": SecretStr("redis://a:1")}, "rediss://"),
    ],
)
def test_settings_that_do_not_fit_the_mode_are_refused(
    tmp_path: Path, values: dict[str, object], message: str
) -> None:
    with pytest.raises(StartupError, match=message):
        build_store(settings(tmp_path, **values))


@pytest.mark.parametrize("mode", ["single", "cluster", "sentinel"])
def test_an_unreachable_redis_at_start_is_a_warning_not_a_crash(
    tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 1; the worker starts and holds until Redis answers.
    s = settings(tmp_path, redis_mode=mode, redis_url=SecretStr("redis://127.0.0.1:1"),
                 redis_sentinel_master="fraud")
    check_redis(s)
    assert "could not" in caplog.text
