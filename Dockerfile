# The fraud-scoring worker (Faust). Used by docker-compose.yml; without Docker: make up.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY fraudcore/ fraudcore/
COPY fraudrules/ fraudrules/
COPY fraudmodel/ fraudmodel/
COPY service/ service/
RUN pip install -c requirements.lock ".[service]"
COPY models/ models/

# Code and models stay root-owned (read-only for the worker); the worker may only write
# in /app itself, where Faust keeps its <app>-data directory.
RUN useradd --system --uid 10001 --no-create-home worker && chown worker /app
USER worker

EXPOSE 6066
# The worker's own entry point: it builds the app from FRAUD_* settings (service.app).
ENV FRAUD_WEB_HOST=0.0.0.0
CMD ["fraud-worker"]
