# Local real stack, no Docker: Apache Kafka 4 (KRaft, jars from Maven Central, run on the
# local Java 17+) and the system's redis-server. Included from the top-level Makefile;
# all state lives in .stack/ (git-ignored). With Docker instead: docker compose up.
# For the cluster and sentinel tests: a Redis Cluster (3 masters + 3 replicas, 7100-7105)
# and a Sentinel setup (master 7120, replica 7121, sentinels 7126-7128); make down stops them
# too (docker compose --profile cluster / --profile sentinel up with Docker).
PY ?= .venv/bin/python

.PHONY: up down status kafka-up kafka-down redis-up redis-down topics \
	up-cluster down-cluster up-sentinel down-sentinel

up: redis-up kafka-up topics

down: kafka-down redis-down down-cluster down-sentinel

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

up-cluster:
	bash stack/redis-cluster.sh up

down-cluster:
	bash stack/redis-cluster.sh down

up-sentinel:
	bash stack/redis-sentinel.sh up

down-sentinel:
	bash stack/redis-sentinel.sh down

# Needs the broker (auto topic creation is off); safe under make -j.
topics: kafka-up
	$(PY) stack/topics.py
