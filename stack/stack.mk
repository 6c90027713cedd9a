# Local real stack, no Docker: Apache Kafka 4 (KRaft, jars from Maven Central, run on the
# local Java 17+) and the system's redis-server. Included from the top-level Makefile;
# all state lives in .stack/ (git-ignored). With Docker instead: docker compose up.
PY ?= .venv/bin/python

.PHONY: up down status kafka-up kafka-down redis-up redis-down topics

up: redis-up kafka-up topics

down: kafka-down redis-down

# Report both, fail if either is down.
status:
	@rc=0; bash stack/redis.sh status || rc=1; bash stack/kafka.sh status || rc=1; exit $$rc

kafka-up:
	bash stack/kafka.sh up

kafka-down:
	bash stack/kafka.sh down

redis-up:
	bash stack/redis.sh up

redis-down:
	bash stack/redis.sh down

# Needs the broker (auto topic creation is off); safe under make -j.
topics: kafka-up
	$(PY) stack/topics.py
