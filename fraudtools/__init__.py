"""The user's tools around the stream: producer, alert tail, live demo.

They talk to Kafka as any client would (aiokafka, JSON), reuse ``training`` for data
(generator, CSV import) and never import ``service``.
"""
