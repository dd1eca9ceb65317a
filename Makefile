# Two commands matter: `make run` (the main recipe) and `make test` (the test suite).
# Both create .venv on first use. On a machine without an NVIDIA GPU the CPU build of PyTorch is
# installed first (TORCH_SPEC), so the dependency range in pyproject.toml is already satisfied and no
# CUDA packages are downloaded; with a GPU the normal (CUDA) PyTorch comes from the dependency range.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
# e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu on CPU machines whose package index has no CPU build
TORCH_INDEX ?=
RECIPE ?= recipes/longcite.yaml
ARGS ?=

.PHONY: setup run test bench lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: PyTorch comes from the dependency range"; \
	  else $(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); fi; \
	fi
	$(BIN)/python -m pip install -q -e ".[test,dpo,retrieval,cluster]"
	touch $@

run: setup
	$(BIN)/recipe run $(RECIPE) $(ARGS)

# lint, the import contract (the layering in README "Architecture"), then the tests and docstring examples
test: setup
	$(BIN)/ruff check runner registry components tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(ARGS)

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

lint: setup
	$(BIN)/ruff check runner registry components tests bench
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) runs
