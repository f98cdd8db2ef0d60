# Quick start: `make demo` and `make test`. Both create .venv and install into it when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED = 1
# mkdocs-material's end-of-life banner, printed by every build
export NO_MKDOCS_2_WARNING = 1

.PHONY: demo test test-all docs install clean benchmark benchmark-peer

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# --overwrite replaces the last demo run, and only if everything in it is the toolkit's.
demo: $(STAMP)
	$(BIN)/zoo train data/animal-mnist --model lenet5 --mode full-retrain --weights none \
		--epochs 30 --batch-size 32 --output runs/demo --overwrite
	$(BIN)/zoo predict runs/demo data/animal-mnist/cat/cat_000.png data/animal-mnist/zebra/zebra_000.png

# One pytest worker per core, at most 4 (each holds a TensorFlow); a test file's tests stay on
# one worker, so its module fixtures are built once.
PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile

test: $(STAMP)
	$(BIN)/python -m pytest $(PARALLEL)
	$(BIN)/lint-imports
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site

test-all: $(STAMP)
	$(BIN)/python -m pytest $(PARALLEL) -m "not network"

# The documentation site (docs/, mkdocs.yml); --strict fails on a broken link or a page missing from nav.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir build/site

# Every benchmark but the peer one, which builds a venv of its own (about 2 GB, once).
benchmark: $(STAMP)
	for f in benchmarks/bench_*.py; do \
		case $$f in *bench_peer.py) continue;; esac; \
		$(BIN)/python $$f || exit 1; \
	done

benchmark-peer: $(STAMP)
	$(BIN)/python benchmarks/bench_peer.py

clean:
	rm -rf $(VENV) runs build *.egg-info
