# mcuc developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
RUFF   := $(VENV)/bin/ruff
LINT_PATHS := compiler tests scripts
# bench/search.md's table: the search recipe is mcuc search's own (mcuc/nas/recipe.py,
# --budget standard); these are the bench's protocol on top of it
# (override: make bench-search BENCH_SEARCH=..., e.g. BENCH_SEARCH="--budget quick")
BENCH_SEARCH ?= --shared-finalists --proxy-check --repeats 2 --baseline best \
	--space bench/space_resolution.toml
# bench/search_boards.md (issue 26): each MCU board at its full limits with 100 ms at its
# clock, the F746 also at 50 and 200 ms (scripts/bench_boards.py's default --rows); the
# baselines' grid widened to what those limits hold
BENCH_BOARDS ?= --shared-finalists --baseline best --grid-dims 32 48 64 96 128 160 192 256 \
	--space bench/space_resolution.toml
# the same five rows at toy scale, end to end in minutes on a CPU (proves the machinery;
# its numbers mean nothing and it writes under runs/, never bench/)
BENCH_BOARDS_SMOKE := --limit 600 --test-limit 50 --fw-images 3 --supernet-epochs 1 \
	--finetune-epochs 1 --distill-epochs 0 --proxy-epochs 0 --population 3 --generations 1 \
	--pool 10 --grid-dims 32 48 64 96 128 160 192 256 --out runs/bench-boards-smoke \
	--bench-dir runs/bench-boards-smoke

.PHONY: help setup demo test fuzz bench bench-search bench-search-boards \
	bench-search-boards-smoke bench-kernels bench-cmsis bench-latency \
	bench-quant lint clean distclean

help:
	@echo "make setup      install Debian packages and .venv (idempotent)"
	@echo "make demo       compile and run the bundled default model"
	@echo "make test       run the test suite and ruff"
	@echo "make fuzz       mutation-fuzz the compiler with 3000 damaged models (FUZZ_CASES=N)"
	@echo "make bench      run the benchmarks"
	@echo "make bench-search  architecture search vs uniform ViTs at 4 budgets (hours; CPU)"
	@echo "make bench-search-boards  the same at each board's limits and time budget (hours)"
	@echo "make bench-search-boards-smoke  its five rows at toy scale (minutes; numbers mean nothing)"
	@echo "make bench-kernels kernel instructions/MAC, portable vs optimized (bench/kernels.md)"
	@echo "make bench-cmsis CMSIS_NN=DIR  linear vs CMSIS-NN fully connected (bench/vs_cmsis.md)"
	@echo "make bench-latency latency model vs emulator counts (bench/latency.md; ~25 min)"
	@echo "make bench-quant  QDQ vs onnxruntime, --int16, the side-by-side table (bench/quant.md)"
	@echo "make lint       ruff only"
	@echo "make clean      remove build outputs and caches (keeps .venv)"
	@echo "make distclean  clean, and remove .venv"

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/mcuc demo

test: setup
	$(PYTEST) -q -p no:cacheprovider
	$(RUFF) check $(LINT_PATHS)

# more cases of tests/test_fuzz.py than CI runs; prints the counts table
FUZZ_CASES ?= 3000
FUZZ_SEED ?= 0
fuzz: setup
	FUZZ_CASES=$(FUZZ_CASES) FUZZ_SEED=$(FUZZ_SEED) $(PYTEST) -q -s -p no:cacheprovider \
		tests/test_fuzz.py

bench: setup
	$(PY) scripts/bench_compile.py
	$(PY) scripts/bench_memory.py

# parts side by side, one thread each; rerun to go on after an interruption
bench-search: setup
	$(PY) scripts/bench_cpu.py -- $(BENCH_SEARCH)

# one process, rows in turn; rerun to go on after an interruption (every stage cached);
# on a GPU: scripts/bench_boards.py $(BENCH_BOARDS) --device cuda --part train, then this
bench-search-boards: setup
	$(PY) scripts/bench_boards.py $(BENCH_BOARDS)

bench-search-boards-smoke: setup
	$(PY) scripts/bench_boards.py $(BENCH_BOARDS_SMOKE)

# the default model three times per board (portable / optimized / --optimize speed) and
# issue 23's two larger shapes on stm32f746, ~5 minutes
bench-kernels: setup
	$(PY) scripts/bench_kernels.py

# every section of bench/latency.md, in its order (the tables: scripts/calibrate_latency.py)
bench-latency: setup
	$(PY) scripts/bench_latency.py --board stm32f746 --configs 30
	$(PY) scripts/bench_latency.py --board stm32f427 --configs 15 --append
	$(PY) scripts/bench_latency.py --board stm32h743 --configs 5 --append
	$(PY) scripts/bench_latency.py --board stm32f746 --optimize speed --configs 15 --append
	$(PY) scripts/bench_latency.py --board stm32f746 --kernels portable --configs 10 --append

# every generated section of bench/quant.md; bench_quant_table.py trains (and caches in
# bench/cache/quant-table) two timm models and the default model's QAT: 18 min the first
# time on one core, 4 min with its checkpoints cached
bench-quant: setup
	$(PY) scripts/bench_quant.py --images 1000 --firmware-images 8 --trace-images 20 --write
	$(PY) scripts/bench_int16.py --seeds 5 --inputs 100 --firmware --write
	$(PY) scripts/bench_quant_table.py --write

# needs a CMSIS-NN checkout (not part of this project): CMSIS_NN=path/to/CMSIS-NN; seconds
bench-cmsis: setup
	$(PY) scripts/bench_vs_cmsis.py $(if $(CMSIS_NN),--cmsis-nn "$(CMSIS_NN)")

lint: setup
	$(RUFF) check $(LINT_PATHS)

clean:
	rm -rf build out dist .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) \
		-type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
