# The fraud-scoring worker (Faust). Used by docker-compose.yml; without Docker: make up.

# The compiled core (native/: Rust, PyO3) as an abi3 wheel, built with maturin; crates pinned
# by native/Cargo.lock.
FROM rust:1-slim AS native
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /maturin && /maturin/bin/pip install --no-cache-dir "maturin>=1.16,<2"
COPY native/ /native/
RUN /maturin/bin/maturin build --release --locked -m /native/Cargo.toml --out /wheels

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
COPY fraudnative/ fraudnative/
COPY service/ service/
COPY --from=native /wheels /wheels
RUN pip install -c requirements.lock ".[service]" /wheels/*.whl && rm -rf /wheels
COPY models/ models/

# Code and models stay root-owned (read-only for the worker); the worker may only write
# in /app itself, where Faust keeps its <app>-data directory.
RUN useradd --system --uid 10001 --no-create-home worker && chown worker /app
USER worker

EXPOSE 6066
# The worker's own entry point: it builds the app from FRAUD_* settings (service.app).
ENV FRAUD_WEB_HOST=0.0.0.0
CMD ["fraud-worker"]
