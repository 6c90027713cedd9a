# Included by the Makefile: the Prometheus rules (ops/prometheus), checked and unit-tested by
# promtool (Debian's `prometheus` package: apt-get install prometheus; .ci/run does).
.PHONY: rules
rules:
	@command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus"; exit 1; }
	promtool check rules ops/prometheus/rules.yml
	promtool check config ops/prometheus/prometheus.yml
	promtool test rules ops/prometheus/tests/*.yml
