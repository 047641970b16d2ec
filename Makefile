# Shortcuts for the gates .ci/run runs; CI itself calls .ci/run, not make.
.PHONY: ci lint fmt types imports test

ci:  ## every gate, exactly as CI runs them
	.ci/run

lint:  ## ruff lint + format check
	uv run ruff check
	uv run ruff format --check

fmt:  ## apply ruff fixes and formatting (review the diff)
	uv run ruff check --fix
	uv run ruff format

types:  ## mypy --strict over src/
	uv run mypy src

imports:  ## import-linter contracts (layer order of docs/architecture.md)
	uv run lint-imports

test:  ## the README test command
	uv run pytest
