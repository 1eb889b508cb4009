PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=

NODE_DIR   := tools/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

.PHONY: venv node test lint demo bench lock asyncapi clean

venv: $(STAMP)

# The AsyncAPI parser and amqplib, pinned by tools/node/package-lock.json.
node: $(NODE_STAMP)

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

# Re-install only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy --strict docs/examples/python_client.py  # the guide's example, typed as shown

test: venv node lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv
	$(BIN)/subreq demo

# Needs RabbitMQ and PostgreSQL (see README "Performance"); e.g. BENCH_ARGS='--commands 5000'.
bench: venv
	$(BIN)/python -m benchmarks.bench $(BENCH_ARGS)

# The worker image's pinned runtime dependencies, from this venv (see Dockerfile).
lock: venv
	$(BIN)/python tools/lock_requirements.py > requirements.lock

# The AsyncAPI document of the wire contract, regenerated from the message models.
asyncapi: venv
	$(BIN)/subreq asyncapi > docs/asyncapi.yaml

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache \
		.hypothesis .import_linter_cache $(NODE_DIR)/node_modules
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
