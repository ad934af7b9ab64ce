# make demo: a loss-landscape plane of three fine-tuned models on MNIST-1D, on CPU.
# make test: the whole test suite (what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= runs/demo
PRE_EPOCHS ?= 6
FT_EPOCHS ?= 10
ARCH_KWARGS ?= {"width": 16}
PLANE_ARGS ?=

.PHONY: install demo test test-fast bench clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Each step is a file target, so an interrupted demo resumes where it stopped.
demo: install $(DEMO)/plane.h5

$(DEMO)/pre.safetensors:
	$(BIN)/landscape pretrain --data mnist1d-source --arch mnist1d_cnn --arch-kwargs '$(ARCH_KWARGS)' \
		--epochs $(PRE_EPOCHS) --lr 0.05 --seed 0 --out $@

$(DEMO)/member-%.safetensors: $(DEMO)/pre.safetensors
	$(BIN)/landscape finetune $< --data mnist1d --epochs $(FT_EPOCHS) --lr 0.02 --seed $* --out $@

$(DEMO)/plane.h5: $(DEMO)/member-1.safetensors $(DEMO)/member-2.safetensors $(DEMO)/member-3.safetensors
	$(BIN)/landscape plane $^ --out $(DEMO) $(PLANE_ARGS)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/plane_bench.py

clean-demo:
	rm -rf $(DEMO)
