# authnode developer entry points. Everything installs itself: see scripts/bootstrap.sh.
.PHONY: bootstrap test test-fast lint run stop screenshots

bootstrap:
	bash scripts/bootstrap.sh

# Extra pytest arguments: make test ARGS='-k redis -x'
test:
	bash scripts/test.sh $(ARGS)

# No servers: lint, type check, tests/unit and the in-memory side of tests/contract, in
# under 2 minutes.
test-fast:
	bash scripts/test.sh tests/unit tests/contract -m "not mongo_store" $(ARGS)

# Photograph every hosted page (Chromium) into build/screenshots/, from the browser tests.
screenshots:
	AUTHNODE_SCREENSHOT_DIR=$(CURDIR)/build/screenshots bash scripts/test.sh \
		tests/acceptance/test_hosted_pages_browser.py $(ARGS)

lint: bootstrap
	.venv/bin/ruff check authnode tests
	.venv/bin/mypy

run:
	bash scripts/run.sh

# Stop the services that `make run` started (they keep running after authnode exits).
stop:
	@if [ -x .venv/bin/python ]; then .venv/bin/python -m tests.services.run_local stop --dir .run; fi
