# The two commands of the README: `make demo` (the main job) and `make test` (the tests).
# Both do all set-up first (scripts/setup.sh is idempotent).
.PHONY: setup demo test check lint clean

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/smi demo

test: setup lint
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check streams schemas tests bench
	.venv/bin/mypy

clean:
	-.venv/bin/smi kafka down --purge
	rm -rf .venv .cache .data
